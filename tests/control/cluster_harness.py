"""Shared pieces of the castor-control integration tests (cluster_test.py, ha_test.py):
processes on 127.0.0.1 (castor-control, castor-engine, etcd, castor-perf writers), each
stopped by its PID, REST calls, checks that record failures instead of stopping the test,
and a runner that always cleans up and prints the tails of every log on failure.

    import cluster_harness as h
    scenarios = h.init(sys.argv)          # CASTOR_CONTROL CASTOR_ENGINE CASTORCTL CASTOR_PERF ...
    h.run(scenarios or [...], globals())  # calls scenario_<name>() for each
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request
import uuid as uuidlib

BIN = types.SimpleNamespace(control=None, engine=None, ctl=None, perf=None)
WORK = tempfile.mkdtemp(prefix="castor-control-test.")
DIR = WORK  # the running scenario's own directory (logs, disks, state, databases), made by run()
FAILURES = []
PROCS = {}  # name -> Popen; every process a test starts, stopped by PID in stop_all()
MIB = 1 << 20
ETCD_BINARY = "/usr/bin/etcd"


def init(argv):
    """Takes the four binaries from argv[1:5]; returns the rest (scenario names)."""
    if len(argv) < 5:
        raise SystemExit(f"usage: {argv[0]} CASTOR_CONTROL CASTOR_ENGINE CASTORCTL CASTOR_PERF "
                         "[scenario ...]")
    BIN.control, BIN.engine, BIN.ctl, BIN.perf = argv[1:5]
    return argv[5:]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        FAILURES.append(what)
    return ok


def until(what, fn, timeout=60, every=0.3):
    start = time.time()
    end = start + timeout
    last = None
    while time.time() < end:
        last = fn()
        if last:
            check(True, f"{what} ({time.time() - start:.1f} s)")
            return last
        time.sleep(every)
    check(False, f"{what} (within {timeout} s; last: {last})")
    return None


def wait_ready(path, proc, what, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return json.load(open(path))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"{what} did not become ready")


USED_PORTS = set()  # handed out by free_port() (not yet bound by their process, maybe)


def free_port():
    """A free loopback port for a process that must listen on a port known in advance.
    Taken below the kernel's ephemeral range when there is room, so that no port:0 listener
    or outgoing connection picks it meanwhile (a standby binds its port only when it
    leads; etcd binds its ports again after a restart)."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(200):
        port = random.randrange(10000, low) if low > 12000 else 0
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port not in USED_PORTS:
            USED_PORTS.add(port)
            return port
    raise SystemExit("no free port")



def rest(base, method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def spawn(name, args, log_name=None):
    """Starts a process (output appended to DIR/<log_name or name>.log) and registers it
    under `name` for stop_all()."""
    out = open(os.path.join(DIR, f"{log_name or name}.log"), "a")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    PROCS[name] = proc
    return proc


class Control:
    """One castor-control. `store`: its --store URI (default: SQLite in DIR); `grpc_port`:
    0 picks a free one at the first start (kept across restarts, so the engines find it
    again)."""

    def __init__(self, name="control", store=None, grpc_port=0, extra=(), listen="127.0.0.1"):
        self.name = name
        self.listen = listen  # the host its gRPC listener binds (the engines' way in)
        self.store = store or "sqlite://" + os.path.join(DIR, f"{name}.db")
        self.grpc_port = grpc_port
        self.extra = list(extra)
        self.ready_file = os.path.join(DIR, f"{name}.ready")
        self.log_file = os.path.join(DIR, f"{name}.log")
        self.proc = None
        self.rest_url = None

    @property
    def address(self):
        return f"{self.listen}:{self.grpc_port}"

    def start(self, wait=True):
        """Starts it; with `wait`, until it leads (its ready file is written only then)."""
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)
        self.rest_url = None
        args = [BIN.control, "--store", self.store, "--grpc-listen", f"{self.listen}:{self.grpc_port}",
                "--rest-listen", "127.0.0.1:0", "--ready-file", self.ready_file,
                "--identity", self.name, "--heartbeat-ms", "200", "--node-deadline-ms", "1500",
                "--reconcile-period-ms", "300", "--faulted-child-wait-ms", "1500",
                "--gc-grace-ms", "1000",
                # Passed to every nexus (busy_rate_mb_s): an engine refusing the option
                # would fail every create; far above what a heal copies here, so it never
                # slows one.
                "--rebuild-busy-rate-mb-s", "4000",
                "--log-level", "debug"] + self.extra
        self.proc = spawn(self.name, args)
        if wait:
            self.wait_leading()
        return self

    def leading(self):
        """True once its ready file is there (it leads and serves); records its ports."""
        if not (os.path.exists(self.ready_file) and os.path.getsize(self.ready_file) > 0):
            return False
        info = json.load(open(self.ready_file))
        self.grpc_port = info["grpc_port"]
        self.rest_url = f"http://127.0.0.1:{info['rest_port']}"
        return True

    def wait_leading(self, timeout=20):
        info = wait_ready(self.ready_file, self.proc, self.name, timeout)
        self.grpc_port = info["grpc_port"]
        self.rest_url = f"http://127.0.0.1:{info['rest_port']}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def call(self, method, path, body=None, timeout=30):
        return rest(self.rest_url, method, path, body, timeout)

    def log_text(self):
        try:
            return open(self.log_file, errors="replace").read()
        except OSError:
            return ""


class Engine:
    """One castor-engine; `control` is a Control (its current gRPC port) or a string of
    castor-control addresses for --control."""

    def __init__(self, name, control, extra=(), listen="127.0.0.1", wrap=(), nvmf_port=0):
        self.name = name
        self.control = control
        self.extra = list(extra)  # more castor-engine flags (listeners, --node-address)
        self.listen = listen      # the host its gRPC and NVMe-oF listeners bind
        self.wrap = list(wrap)    # a command prefix (NetNs.wrap(): run it in that namespace)
        # The NVMe-oF port (0: a free one at each start). A fixed one keeps the engine at
        # the same address across restarts, so that a multipath host's list of paths
        # still names it.
        self.nvmf_port = nvmf_port
        self.proc = None

    def start(self):
        ready = os.path.join(DIR, f"{self.name}.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        control = self.control if isinstance(self.control, str) else self.control.address
        args = [BIN.engine, "--cores", "0", "--grpc-listen", f"{self.listen}:0", "--metrics-listen", "none",
                "--nvmf-listen", f"{self.listen}:{self.nvmf_port}", "--state-dir", os.path.join(DIR, "state-" + self.name),
                "--ready-file", ready, "--control", control,
                "--node-name", self.name, "--node-label", f"zone=z{self.name[-1]}"] + self.extra
        self.proc = spawn(self.name, self.wrap + args)
        info = wait_ready(ready, self.proc, f"engine {self.name}")
        reach = "127.0.0.1" if self.listen in ("0.0.0.0", "127.0.0.1") else self.listen
        self.grpc = f"{reach}:{info['grpc_port']}"
        self.nvmf = f"{reach}:{info['nvmf_ports'][0]}" if info.get("nvmf_ports") else None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def ctl(self, *args):
        r = subprocess.run([BIN.ctl, "-e", self.grpc, "-o", "json"] + list(args), capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"castorctl {args}: {r.stderr.strip()}")
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def replicas(self):
        out = self.ctl("replica", "list")
        items = out if isinstance(out, list) else out.get("replicas", [])
        return [r["uuid"] for r in items]

    def pools(self):
        out = self.ctl("pool", "list")
        return out if isinstance(out, list) else out.get("pools", [])


def enter_netns(addresses=()):
    """Re-executes this test in a network namespace of its own (unshare -n, as root), with
    its loopback up and also carrying `addresses`; a test that changes links or addresses
    (NetNs) never touches the machine's network. Failing to make one fails the test."""
    if os.environ.get("CASTOR_TEST_NETNS") == "1":
        cmds = [["ip", "link", "set", "lo", "up"]] + [["ip", "addr", "add", f"{a}/32", "dev", "lo"] for a in addresses]
        for cmd in cmds:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)}: {r.stderr.strip()}")
        return
    env = dict(os.environ, CASTOR_TEST_NETNS="1")
    try:
        os.execvpe("unshare", ["unshare", "-n", sys.executable] + sys.argv, env)
    except OSError as e:
        raise SystemExit(f"cannot run unshare -n (a network namespace of its own): {e}")


NETNS = []  # NetNs made by this test, removed by run() at the end


class NetNs:
    """A network namespace for processes to be cut off from the rest, joined to the test's
    own namespace (see enter_netns) by a veth pair: HERE on this side, THERE on the other.
    cut() takes the link down: nothing passes either way and nothing is refused (no RST),
    as with a pulled cable; heal() brings it back.

    Several at once: NetNs(index) for index 1..254 uses 10.231.<index>.1/.2 and links of
    its own; up(route=True) routes everything else through this side, so that with
    forward() on, namespaces reach each other and the addresses of the test's own (one
    process per namespace, each cut off alone)."""
    HERE, THERE = "10.231.0.1", "10.231.0.2"

    def __init__(self, index=0):
        self.name = f"castor-test-{os.getpid()}" + (f"-{index}" if index else "")
        self.here_dev, self.there_dev = ("cveth0", "cveth1") if index == 0 else (f"cveth{index}h", f"cveth{index}t")
        if index:
            self.HERE, self.THERE = f"10.231.{index}.1", f"10.231.{index}.2"

    def _ip(self, *args):
        r = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def up(self, route=False):
        self._ip("netns", "add", self.name)
        NETNS.append(self)
        self._ip("link", "add", self.here_dev, "type", "veth", "peer", "name", self.there_dev, "netns", self.name)
        self._ip("addr", "add", f"{self.HERE}/30", "dev", self.here_dev)
        self._ip("link", "set", self.here_dev, "up")
        self._ip("-n", self.name, "addr", "add", f"{self.THERE}/30", "dev", self.there_dev)
        self._ip("-n", self.name, "link", "set", self.there_dev, "up")
        self._ip("-n", self.name, "link", "set", "lo", "up")
        if route:
            self._ip("-n", self.name, "route", "add", "default", "via", self.HERE)
        return self

    def wrap(self):
        return ["ip", "netns", "exec", self.name]

    def cut(self):
        self._ip("link", "set", self.here_dev, "down")

    def heal(self):
        self._ip("link", "set", self.here_dev, "up")

    @staticmethod
    def forward():
        """IPv4 forwarding on in the test's own namespace (enter_netns): the namespaces
        made with up(route=True) reach each other through it."""
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")

    def remove(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Etcd:
    """A single-member etcd (Debian's etcd-server) on free loopback ports and a data
    directory in DIR; start() again after kill9() reuses both. Missing binary: the test
    fails (SystemExit), it is never skipped."""

    def __init__(self, name="etcd"):
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = os.path.join(DIR, f"{name}-data")
        self.proc = None
        self.starts = 0

    @property
    def uri(self):
        return f"etcd://127.0.0.1:{self.client_port}"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout=30):
        if not os.access(ETCD_BINARY, os.X_OK):
            raise SystemExit(f"{ETCD_BINARY} is missing: install etcd-server (scripts/setup.sh "
                             "installs every package the tests need)")
        client = self.url
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [ETCD_BINARY, "--name", "castor-test", "--data-dir", self.data_dir,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"castor-test={peer}", "--initial-cluster-state", "new",
                "--logger", "zap", "--log-outputs", "stderr"]
        self.starts += 1
        self.proc = spawn(self.name, args)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"etcd exited during start-up (status {self.proc.returncode})")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return self
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise SystemExit("etcd did not become healthy")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def range(self, prefix):
        """Every key under `prefix` as {key: (value, mod_revision)}, read through etcd's
        JSON gateway (no castor-control involved)."""
        import base64
        b64 = lambda b: base64.b64encode(b).decode()
        key = prefix.encode()
        end = key[:-1] + bytes([key[-1] + 1])
        body = json.dumps({"key": b64(key), "range_end": b64(end)}).encode()
        req = urllib.request.Request(self.url + "/v3/kv/range", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            kvs = json.loads(r.read()).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode(): (base64.b64decode(kv.get("value", "")),
                                                       int(kv.get("mod_revision", 0)))
                for kv in kvs}


def nodes_online(ctl):
    code, out = ctl.call("GET", "/v1/nodes")
    return len([x for x in out.get("nodes", []) if x["status"] == "online"]) if code == 200 else 0


def disk_uri(node, size_mb):
    """A pool disk for `node` in the scenario's directory: a sparse file made here (the
    engine, finding it at the size asked, opens it as it is instead of allocating all of
    it), so that a suite of scenarios costs the disk space its volumes write, not the sum
    of its pools."""
    path = os.path.join(DIR, f"disk-{node}.img")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.truncate(size_mb * MIB)
    return f"file://{path}?size_mb={size_mb}"


def declare_pools(ctl, names, size_mb=256):
    for name in names:
        code, p = ctl.call("PUT", f"/v1/nodes/{name}/pools/pool", {"disks": [disk_uri(name, size_mb)]})
        check(code == 200, f"pool on {name} declared ({code} {p.get('status', p)})")

    def all_online():
        pools = ctl.call("GET", "/v1/pools")[1].get("pools", [])
        return len(pools) == len(names) and all(p["status"] == "online" for p in pools)
    until("every pool online", all_online)


def volume(ctl, uuid):
    code, v = ctl.call("GET", f"/v1/volumes/{uuid}")
    return v if code == 200 else None


def healthy(ctl, uuid, count, avoid=()):
    v = volume(ctl, uuid)
    if not v or v.get("status") != "online":
        return None
    reps = v.get("replicas", [])
    if len(reps) != count or any(r["state"] != "online" or r["node"] in avoid for r in reps):
        return None
    if not v.get("target", {}).get("uri"):
        return None
    return v


def split_uri(uri):
    # nvmf://127.0.0.1:PORT/NQN
    rest_ = uri[len("nvmf://"):]
    hostport, nqn = rest_.split("/", 1)
    return hostport, nqn


def create_volume(ctl, replicas, size_mb=64, **kw):
    uid = str(uuidlib.uuid4())
    body = {"size_bytes": size_mb * MIB, "replica_count": replicas}
    body.update(kw)
    code, v = ctl.call("PUT", f"/v1/volumes/{uid}", body)
    check(code == 200, f"volume {uid} created with {replicas} replicas ({code} {v.get('message', '')})")
    return uid, v


def publish(ctl, uid, node=None):
    code, v = ctl.call("PUT", f"/v1/volumes/{uid}/target", {"node": node} if node else {})
    ok = code == 200 and v.get("target", {}).get("uri")
    check(bool(ok), f"volume {uid} published ({code} {v.get('target', v.get('message'))})")
    return v if ok else None


def start_writer(name, uri, seconds, queue_depth=16):
    """A verifying castor-perf random writer on a published volume's NVMe-oF URI (its exit
    status is non-zero on any I/O error or data mismatch)."""
    hostport, nqn = split_uri(uri)
    return spawn(name, [BIN.perf, "-r", hostport, "-n", nqn, "-w", "randwrite", "--verify", "-q",
                        str(queue_depth), "-t", str(seconds), "--cores", "1"])


def multipath_uri(uri, other_paths, loss_timeout_s=60):
    """The nvmf:// URI of Castor's multipath host for a published volume: `uri` as its
    first path and `other_paths` (HOST:PORT of the other engines' NVMe-oF listeners) as
    paths that connect once their engine serves the volume. I/O with no usable path
    waits up to `loss_timeout_s`."""
    opts = (f"paths={','.join(other_paths)}&ctrl_loss_timeout_ms={loss_timeout_s * 1000}"
            "&reconnect_delay_ms=100&reconnect_delay_max_ms=500&connect_timeout_ms=1000")
    return f"{uri}?{opts}"


def start_multipath_writer(name, uri, other_paths, seconds, queue_depth=16, loss_timeout_s=60, offset_mb=0,
                           extra=()):
    """The same writer through castor-perf's --bdev: the nvmf:// multipath host (see
    multipath_uri). `extra`: more castor-perf flags (--write-log, --seed)."""
    return spawn(name, [BIN.perf, "--bdev", multipath_uri(uri, other_paths, loss_timeout_s), "-w", "randwrite",
                        "--verify", "-q", str(queue_depth), "-t", str(seconds), "--cores", "1", "--json",
                        "--offset-mb", str(offset_mb)] + list(extra))


def perf_json(name):
    """The JSON result line (castor-perf --json) in DIR/<name>.log, or {}."""
    try:
        lines = open(os.path.join(DIR, f"{name}.log"), errors="replace").read().strip().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return {}
    return {}


def writer_result(name, proc, timeout=120):
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    ok = check(rc == 0, f"the writer {name} saw no error and no mismatch (rc {rc})")
    if not ok:
        print("\n".join(open(os.path.join(DIR, f"{name}.log"), errors="replace")
                        .read().splitlines()[-30:]))
    return ok


def replica_digest(engine, uuid, size):
    """sha256 of a replica's whole content, read through its engine's block API."""
    import hashlib
    path = os.path.join(WORK, f"replica-{uuid}")
    engine.ctl("bdev", "read", uuid, "--offset", "0", "--length", str(size), "--file", path)
    d = hashlib.sha256(open(path, "rb").read()).hexdigest()
    os.unlink(path)
    return d


def replica_digests(ctl, engines, vol, resume=True):
    """{node: sha256} of every replica of `vol` (a volume document whose target names
    the nexus's node), read through each replica's engine. The volume is quiesced to read
    them: castor-control paused meanwhile (SIGSTOP; it would re-publish), the nexus
    unpublished and destroyed, each remote replica's share removed (a replica is claimed
    by its nexus or its subsystem). The volume is left without a nexus: for a test's end.
    With resume=False castor-control is left stopped (kill it next): resumed, it would
    re-create the nexus, which then resyncs its children while the test stops them."""
    size = int(vol["size_bytes"])
    tnode = vol["target"]["node"]
    ctl.proc.send_signal(signal.SIGSTOP)
    try:
        engines[tnode].ctl("nexus", "unpublish", vol["uuid"], "--force")
        engines[tnode].ctl("nexus", "destroy", vol["uuid"])
        digests = {}
        for r in vol["replicas"]:
            if r["node"] != tnode:
                engines[r["node"]].ctl("replica", "unshare", r["uuid"], "--force")
            digests[r["node"]] = replica_digest(engines[r["node"]], r["uuid"], size)
        return digests
    finally:
        if resume:
            ctl.proc.send_signal(signal.SIGCONT)


def _rank(name):
    # Writers first, then engines (they deregister), castor-controls, etcd last.
    if name.startswith("perf"):
        return 0
    if name.startswith("control"):
        return 2
    if name.startswith("etcd"):
        return 3
    return 1


# An engine's shutdown may wait up to 10 s for a nexus's child flush (a child whose node is
# already gone), then tear down; past this, it is taken as hung.
STOP_GRACE_S = 20


def stop_all():
    """Stops every process started through this module, by PID (SIGCONT first: a stopped
    process does not act on SIGTERM)."""
    for name, p in sorted(PROCS.items(), key=lambda kv: _rank(kv[0])):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.terminate()
                p.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {p.pid}) ignored SIGTERM for {STOP_GRACE_S} s: its threads' stacks follow")
                dump_stacks(name, p.pid)
                p.kill()
                p.wait()
    PROCS.clear()


def dump_stacks(name, pid):
    """Every thread's stack of a process that stopped answering, into DIR/<name>.stacks,
    so that a hang says where it is (gdb, when the machine has it)."""
    gdb = shutil.which("gdb")
    path = os.path.join(DIR, f"{name}.stacks")
    if not gdb:
        open(path, "w").write("gdb is not installed: no stacks\n")
        return
    with open(path, "w") as out:
        subprocess.run([gdb, "-batch", "-p", str(pid), "-ex", "thread apply all bt"], stdout=out,
                       stderr=subprocess.STDOUT, timeout=120)
    print(f"--- {name}.stacks (head)")
    print("\n".join(open(path, errors="replace").read().splitlines()[:200]))


SANITIZER_REPORT = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: ")


def sanitizer_reports(root):
    """A sanitizer report in any process's log under `root` fails the test, even when every
    check passed (an engine that hits a use-after-free while shutting down exits without
    failing one)."""
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if not f.endswith(".log"):
                continue
            path = os.path.join(d, f)
            lines = open(path, errors="replace").read().splitlines()
            for i, line in enumerate(lines):
                if any(r in line for r in SANITIZER_REPORT):
                    check(False, f"sanitizer report in {os.path.relpath(path, WORK)}: {line.strip()}")
                    print("\n".join(lines[i:i + 30]))
                    break


def run(scenarios, namespace):
    """Runs scenario_<name>() from `namespace` for each name; always stops every process;
    on failure prints the tail of every log; exits 1 on any failure."""
    global DIR
    import threading
    scanned = set()
    removals = []  # a passed scenario's directory is removed while the next one runs
    try:
        for s in scenarios:
            log(f"=== {s}")
            DIR = os.path.join(WORK, s)
            os.makedirs(DIR, exist_ok=True)
            failed_before = len(FAILURES)
            namespace["scenario_" + s]()
            stop_all()
            sanitizer_reports(DIR)
            scanned.add(DIR)
            if len(FAILURES) == failed_before and not os.environ.get("KEEP"):
                # A passed scenario's disks and logs, removed in the background: on a file
                # system mounted with `discard` freeing a few hundred MB of written pool
                # disks takes seconds.
                t = threading.Thread(target=shutil.rmtree, args=(DIR,), kwargs={"ignore_errors": True})
                t.start()
                removals.append(t)
    except SystemExit as e:
        FAILURES.append(str(e))
    except Exception as e:  # report, then clean up
        import traceback
        traceback.print_exc()
        FAILURES.append(repr(e))
    finally:
        stop_all()
        for t in removals:
            t.join()
        for ns in NETNS:
            ns.remove()
        NETNS.clear()
        if os.path.isdir(DIR) and DIR not in scanned:
            sanitizer_reports(DIR)  # the scenario that raised
        if FAILURES:
            for d, _, files in sorted(os.walk(WORK)):
                for f in sorted(files):
                    if f.endswith(".log"):
                        path = os.path.join(d, f)
                        print(f"--- {os.path.relpath(path, WORK)} (tail)")
                        print("\n".join(open(path, errors="replace").read().splitlines()[-40:]))
        if not os.environ.get("KEEP"):
            shutil.rmtree(WORK, ignore_errors=True)
        else:
            print(f"logs kept in {WORK}")
    print(f"RESULT: {'FAIL' if FAILURES else 'PASS'} ({len(FAILURES)} failure(s))")
    sys.exit(1 if FAILURES else 0)
