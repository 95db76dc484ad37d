#!/usr/bin/python3
"""castor-csi's node plugin in a QEMU guest (a real Linux kernel with its NVMe/TCP and iSCSI
initiators, ext4 and xfs), with the volumes made and published by castor-csi's controller
against a real castor-control and two real engines on the host. The driver plays kubelet:
it makes the CSI calls in kubelet's order, with kubelet's paths, and looks inside the guest
through a shell (busybox nc on a forwarded port).

  ext4 (NVMe/TCP, 2 replicas): stage (mkfs, mount) twice, publish to two pods (one
  read-only) twice, write a file through one and read it through the other, a write on
  the read-only one refused, stats (bytes, inodes, condition), a wrong path NOT_FOUND,
  online expansion (the controller grows the published volume, the node grows the mounted
  ext4, 70 MiB more written), unpublish (targets removed) and unstage (controller gone)
  twice; stage again and find the file.
  xfs (iSCSI): stage makes xfs, grows online (xfs_growfs after an iSCSI rescan), the file
  survives an unstage and a stage.
  ext4 (NBD): the same with nbd-client; NodeExpandVolume refused (NBD cannot announce a size).
  block (NVMe/TCP): staged without a file system, published onto a file, data written
  through it and read back; stats report the device's size.
  errors: no uri, not staged, another staging path, unknown volumes.

  a nexus that moves: a mounted ext4 volume under a writer in the guest; its nexus's
  node is drained, castor-control moves the nexus to the other engine (same NQN, another
  address), the node plugin (with --control) connects the new path, which native NVMe
  multipath joins to the mounted namespace, and drops the dead one; the writer sees no
  error and every file reads back.
  a nexus whose engine dies: the same under `kill -9` of the nexus's engine: the kernel
  queues the writer's I/O while no path is live, castor-control declares the node offline
  and re-creates the nexus (a higher fencing generation) on the other engine, the node
  plugin connects it, ANA reports the new path optimized, and the writer sees no error;
  the killed engine comes back and the volume heals to two replicas.

Everything runs in a network namespace of its own (the test re-executes itself under
`unshare -n`), whose loopback also carries 10.0.2.2: the engines listen on it and
advertise it, so the URIs castor-control hands out are the ones the guest uses (QEMU's
user network maps the guest's 10.0.2.2 to the namespace's loopback).

    csi_node_test.py CASTOR_CONTROL CASTOR_ENGINE CASTORCTL CASTOR_PERF CASTOR_CSI CSI_DESC GUEST_DIR
"""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "control"))
sys.path.insert(0, os.path.join(HERE, "..", "csi"))
import cluster_harness as h  # noqa: E402
from csi_client import CsiClient  # noqa: E402

MIB = 1 << 20
GUEST_HOST = "10.0.2.2"  # the host as QEMU's user network shows it to the guest
ARGS = {}
GUEST = {}
CTL = {}
ENGINES = {}
DRIVER = "io.castor.csi"


def mount_cap(fs):
    return {"mount": {"fs_type": fs}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}


BLOCK = {"block": {}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}}


def staging_path(vid, block=False):
    if block:
        return f"/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/pv-{vid}"
    return f"/var/lib/kubelet/plugins/kubernetes.io/csi/{DRIVER}/{hashlib.sha256(vid.encode()).hexdigest()}/globalmount"


def pod_path(pod, vid, block=False):
    if block:
        return f"/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pv-{vid}/{pod}"
    return f"/var/lib/kubelet/pods/{pod}/volumes/kubernetes.io~csi/pv-{vid}/mount"


def sh(cmd, timeout=120):
    """Runs `cmd` in the guest's shell; returns (exit status, output)."""
    with socket.create_connection(("127.0.0.1", GUEST["shell_port"]), timeout=timeout) as s:
        s.sendall((cmd + "\necho \"@rc=$?\"\n").encode())
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    text = out.decode(errors="replace")
    rc = -1
    if "@rc=" in text:
        text, _, tail = text.rpartition("@rc=")
        rc = int(tail.strip() or -1)
    return rc, text


def expect(c, method, req, want, what):
    code, resp = c.call(method, req, timeout=300)
    h.check(code == want, f"{method} {what}: {want} (got {code}: {str(resp)[:300]})")
    return resp if code == "OK" else None


def extra_initrd(guest_dir):
    """castor-csi (debug info stripped) and the libraries it loads that the guest lacks, as
    a gzip'd cpio to append to the guest's initramfs."""
    root = tempfile.mkdtemp(prefix="csi-initrd.", dir=h.WORK)
    os.makedirs(os.path.join(root, "usr/bin"))
    libdir = os.path.join(root, "lib/x86_64-linux-gnu")
    os.makedirs(libdir)
    subprocess.run(["objcopy", "--strip-debug", ARGS["csi"], os.path.join(root, "usr/bin/castor-csi")], check=True)
    have = set(os.listdir(os.path.join(guest_dir, "root/lib/x86_64-linux-gnu")))
    out = subprocess.run(["ldd", ARGS["csi"]], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("/"):
            name = os.path.basename(parts[2])
            if name not in have:
                shutil.copy(parts[2], os.path.join(libdir, name))
    busybox = os.path.join(guest_dir, "root/bin/busybox")
    path = os.path.join(h.WORK, "csi-initrd.cpio.gz")
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True, check=True).stdout
    cpio = subprocess.run([busybox, "cpio", "-o", "-H", "newc"], cwd=root, input=files.encode(),
                          capture_output=True, check=True).stdout
    subprocess.run(["gzip", "-1"], input=cpio, stdout=open(path, "wb"), check=True)
    return path


def boot_guest(node):
    guest_dir = ARGS["guest"]
    r = subprocess.run([os.path.join(HERE, "make-guest.sh"), guest_dir])
    if r.returncode != 0:
        raise SystemExit("cannot build the guest")
    GUEST["csi_port"] = h.free_port()
    GUEST["shell_port"] = h.free_port()
    env = dict(os.environ)
    env["VM_EXTRA_INITRD"] = extra_initrd(guest_dir)
    env["VM_HOSTFWD"] = (f"hostfwd=tcp:127.0.0.1:{GUEST['csi_port']}-:10199,"
                         f"hostfwd=tcp:127.0.0.1:{GUEST['shell_port']}-:2323")
    env["VM_TIMEOUT"] = "900"
    GUEST["log"] = os.path.join(h.DIR, "guest.log")
    GUEST["proc"] = subprocess.Popen([os.path.join(HERE, "boot.sh"), guest_dir, GUEST["log"], "mode=csi-node",
                                      f"node={node}", "serve_s=800", f"control={GUEST_HOST}:{CTL['ctl'].grpc_port}"], env=env, start_new_session=True,
                                     stdout=open(os.path.join(h.DIR, "boot.out"), "w"), stderr=subprocess.STDOUT)
    node_client = CsiClient(f"127.0.0.1:{GUEST['csi_port']}", ARGS["desc"])
    end = time.time() + 240
    while time.time() < end:
        if GUEST["proc"].poll() is not None:
            raise SystemExit("the guest stopped before its node plugin served")
        code, _ = node_client.call("NodeGetInfo", {}, timeout=5)
        if code == "OK":
            h.check(True, f"the node plugin in the guest answers ({time.time() - end + 240:.0f} s)")
            return node_client
        time.sleep(1)
    raise SystemExit("the node plugin in the guest never answered")


def stop_guest():
    p = GUEST.get("proc")
    if p and p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    log = GUEST.get("log")
    if h.FAILURES and log and os.path.exists(log):
        print("--- guest console (tail)")
        print("\n".join(open(log, errors="replace").read().splitlines()[-80:]))


def for_guest(ctx):
    return dict(ctx)


def scenario_node():
    ctl = h.Control().start()
    CTL["ctl"] = ctl
    engines = []
    for name in ("n1", "n2"):
        e = h.Engine(name, ctl, listen="0.0.0.0",
                     extra=["--iscsi-listen", "0.0.0.0:0", "--nbd-listen", "0.0.0.0:0",
                            "--node-address", GUEST_HOST])
        e.start()
        engines.append(e)
        ENGINES[name] = e
    h.until("two nodes online", lambda: h.nodes_online(ctl) == 2)
    for e in engines:
        code, _ = ctl.call("PUT", f"/v1/nodes/{e.name}/pools/pool",
                           {"disks": [h.disk_uri(e.name, 1024)]})
        h.check(code == 200, f"pool on {e.name} declared")
    h.until("both pools online", lambda: len([p for p in ctl.call("GET", "/v1/pools")[1].get("pools", [])
                                               if p["status"] == "online"]) == 2)
    sock = os.path.join(h.DIR, "csi.sock")
    ready = os.path.join(h.DIR, "csi.ready")
    proc = h.spawn("csi", [ARGS["csi"], "--mode", "controller", "--endpoint", f"unix://{sock}", "--control",
                           ctl.address, "--ready-file", ready])
    h.wait_ready(ready, proc, "castor-csi controller")
    c = CsiClient(f"unix://{sock}", ARGS["desc"])
    try:
        n = boot_guest("n1")
        node_scenarios(c, n)
    finally:
        stop_guest()


def create_and_publish(c, name, cap, params, size=64 * MIB):
    made = expect(c, "CreateVolume", {"name": name, "volume_capabilities": [cap], "parameters": params,
                                      "capacity_range": {"required_bytes": str(size)}}, "OK", name)
    vid = made["volume"]["volume_id"]
    pub = expect(c, "ControllerPublishVolume", {"volume_id": vid, "node_id": "n1", "volume_capability": cap},
                 "OK", f"{name} for n1")
    return vid, for_guest(pub["publish_context"]), made["volume"]["volume_context"]


def stage(n, vid, ctx, vctx, cap, block=False, want="OK", what=""):
    return expect(n, "NodeStageVolume", {"volume_id": vid, "publish_context": ctx, "volume_context": vctx,
                                         "staging_target_path": staging_path(vid, block),
                                         "volume_capability": cap}, want, what)


def publish(n, vid, ctx, cap, pod, readonly=False, block=False, want="OK", what=""):
    return expect(n, "NodePublishVolume", {"volume_id": vid, "publish_context": ctx,
                                           "staging_target_path": staging_path(vid, block),
                                           "target_path": pod_path(pod, vid, block), "volume_capability": cap,
                                           "readonly": readonly}, want, what)


def unpublish(n, vid, pod, block=False, what=""):
    return expect(n, "NodeUnpublishVolume", {"volume_id": vid, "target_path": pod_path(pod, vid, block)}, "OK", what)


def unstage(n, vid, block=False, what=""):
    return expect(n, "NodeUnstageVolume", {"volume_id": vid, "staging_target_path": staging_path(vid, block)},
                  "OK", what)


def node_scenarios(c, n):
    info = expect(n, "NodeGetInfo", {}, "OK", "")
    h.check(info and info["node_id"] == "n1", f"node id n1 ({info})")
    caps = expect(n, "NodeGetCapabilities", {}, "OK", "")
    got = {x["rpc"]["type"] for x in (caps or {}).get("capabilities", [])}
    h.check({"STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS", "EXPAND_VOLUME", "SINGLE_NODE_MULTI_WRITER"} <= got,
            f"node capabilities {got}")

    # ---- ext4 over NVMe/TCP, two replicas
    cap = mount_cap("ext4")
    vid, ctx, vctx = create_and_publish(c, "vm-ext4", cap, {"repl": "2"})
    h.check(ctx["uri"].startswith(f"nvmf://{GUEST_HOST}:"), f"publish_context {ctx}")
    # Errors first: nothing staged by them.
    expect(n, "NodeStageVolume", {"volume_id": vid, "staging_target_path": staging_path(vid),
                                  "volume_capability": cap}, "INVALID_ARGUMENT", "without a uri")
    expect(n, "NodeStageVolume", {"volume_id": vid, "publish_context": ctx, "volume_capability": cap},
           "INVALID_ARGUMENT", "without a staging path")
    expect(n, "NodeStageVolume", {"volume_id": vid, "publish_context": ctx,
                                  "staging_target_path": staging_path(vid)}, "INVALID_ARGUMENT",
           "without a capability")
    publish(n, vid, ctx, cap, "pod1", want="FAILED_PRECONDITION", what="before staging")
    for i in range(2):
        stage(n, vid, ctx, vctx, cap, what=f"ext4 #{i + 1}")
    rc, out = sh(f"grep ' {staging_path(vid)} ' /proc/mounts")
    h.check(rc == 0 and " ext4 " in out and "/dev/nvme" in out, f"ext4 from an NVMe namespace at the staging path: {out.strip()}")
    rc, out = sh("cat /sys/class/nvme/*/subsysnqn")
    h.check(vid in out, f"the controller's subsystem is the volume's ({out.strip()})")
    stage(n, vid, ctx, vctx, cap, want="ALREADY_EXISTS", what="at another path", block=True)
    for i in range(2):
        publish(n, vid, ctx, cap, "pod1", what=f"pod1 #{i + 1}")
        publish(n, vid, ctx, cap, "pod2", readonly=True, what=f"pod2 read-only #{i + 1}")
    publish(n, vid, ctx, cap, "pod1", readonly=True, want="ALREADY_EXISTS", what="pod1 again read-only")
    snsw = {"mount": {"fs_type": "ext4"}, "access_mode": {"mode": "SINGLE_NODE_SINGLE_WRITER"}}
    publish(n, vid, ctx, snsw, "pod4", want="FAILED_PRECONDITION",
            what="single-writer at a third target while published at two")
    p1, p2 = pod_path("pod1", vid), pod_path("pod2", vid)
    rc, out = sh(f"dd if=/dev/urandom of={p1}/data bs=1M count=4 2>/dev/null && sync && md5sum {p1}/data | cut -d' ' -f1")
    digest = out.strip()
    h.check(rc == 0 and len(digest) == 32, f"a file written through pod1 ({out.strip()})")
    rc, out = sh(f"md5sum {p2}/data | cut -d' ' -f1")
    h.check(rc == 0 and out.strip() == digest, "the same file read through pod2")
    rc, out = sh(f"touch {p2}/nope")
    h.check(rc != 0, f"pod2 is read-only ({out.strip()})")
    st = expect(n, "NodeGetVolumeStats", {"volume_id": vid, "volume_path": p1}, "OK", "of pod1")
    units = {u.get("unit"): u for u in (st or {}).get("usage", [])}
    b = units.get("BYTES", {})
    h.check(int(b.get("total", 0)) > 50 * MIB and int(b.get("used", 0)) >= 4 * MIB, f"bytes usage {b}")
    h.check(int(units.get("INODES", {}).get("total", 0)) > 0, "inode usage")
    cond = (st or {}).get("volume_condition", {})
    h.check(st and not cond.get("abnormal", False) and cond.get("message") == "connected", f"condition {cond}")
    expect(n, "NodeGetVolumeStats", {"volume_id": vid, "volume_path": "/some/path"}, "NOT_FOUND", "of a wrong path")
    expect(n, "NodeGetVolumeStats", {"volume_id": "fake-vol-id", "volume_path": p1}, "NOT_FOUND",
           "of an unknown volume")
    expect(n, "NodeGetVolumeStats", {"volume_id": vid}, "INVALID_ARGUMENT", "without a path")
    # Online expansion: the controller grows the published volume while the file system is
    # mounted (the kernel hears of it from the target's notice), the node grows ext4.
    ex = expect(c, "ControllerExpandVolume", {"volume_id": vid, "volume_capability": cap,
                                              "capacity_range": {"required_bytes": str(128 * MIB)}}, "OK",
                "to 128 MiB while mounted")
    h.check(ex and ex.get("node_expansion_required") is True, "node expansion required")
    for i in range(2):
        nx = expect(n, "NodeExpandVolume", {"volume_id": vid, "volume_path": p1,
                                            "capacity_range": {"required_bytes": str(128 * MIB)}}, "OK",
                    f"online #{i + 1}")
        h.check(nx and int(nx["capacity_bytes"]) == 128 * MIB, f"the device is 128 MiB ({nx})")
    st = expect(n, "NodeGetVolumeStats", {"volume_id": vid, "volume_path": p2}, "OK", "after the expansion")
    total = int({u.get("unit"): u for u in (st or {}).get("usage", [])}.get("BYTES", {}).get("total", 0))
    h.check(total > 100 * MIB, f"ext4 grew online to {total >> 20} MiB")
    rc, out = sh(f"dd if=/dev/urandom of={p1}/big bs=1M count=70 conv=fsync 2>&1 && md5sum {p2}/data | cut -d' ' -f1")
    h.check(rc == 0 and out.strip().endswith(digest), f"70 MiB more written into the grown file system ({out.strip()[-80:]})")
    rc, out = sh("dmesg | grep -i -E 'i/o error|ext4.*error' | head -3")
    h.check(not out.strip(), f"no I/O error in the kernel ({out.strip()})")
    for i in range(2):
        unpublish(n, vid, "pod1", what=f"pod1 #{i + 1}")
        unpublish(n, vid, "pod2", what=f"pod2 #{i + 1}")
    rc, _ = sh(f"test -e {p1} || test -e {p2}")
    h.check(rc != 0, "both target paths removed")
    for i in range(2):
        unstage(n, vid, what=f"#{i + 1}")
    rc, out = sh("ls /sys/class/nvme/ 2>/dev/null | wc -l; grep -c ' ext4 ' /proc/mounts")
    h.check(out.split() == ["0", "0"], f"no controller and no mount left ({out.split()})")

    # Unstaged, unpublished and published again (the nexus made anew): the file is there.
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "")
    pub = expect(c, "ControllerPublishVolume", {"volume_id": vid, "node_id": "n1", "volume_capability": cap},
                 "OK", "again")
    ctx = for_guest(pub["publish_context"])
    stage(n, vid, ctx, vctx, cap, what="again")
    publish(n, vid, ctx, cap, "pod3", what="pod3")
    p3 = pod_path("pod3", vid)
    rc, out = sh(f"md5sum {p3}/data | cut -d' ' -f1")
    h.check(rc == 0 and out.strip() == digest, "the file is there after unstage, unpublish, publish and stage")
    unpublish(n, vid, "pod3")
    unstage(n, vid)
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "")
    expect(c, "DeleteVolume", {"volume_id": vid}, "OK", "")

    # ---- xfs over iSCSI
    cap = mount_cap("xfs")
    vid, ctx, vctx = create_and_publish(c, "vm-xfs", cap, {"protocol": "iscsi"}, size=320 * MIB)
    h.check(ctx["uri"].startswith(f"iscsi://{GUEST_HOST}:"), f"iSCSI publish_context {ctx}")
    stage(n, vid, ctx, vctx, cap, what="xfs over iSCSI")
    rc, out = sh(f"grep ' {staging_path(vid)} ' /proc/mounts")
    h.check(rc == 0 and " xfs " in out and "/dev/sd" in out, f"xfs from a SCSI disk: {out.strip()}")
    publish(n, vid, ctx, cap, "pod1")
    rc, _ = sh(f"echo castor >{pod_path('pod1', vid)}/hello && sync")
    h.check(rc == 0, "a file written on xfs")
    # Online over iSCSI: the LU grows (the kernel hears CAPACITY DATA HAS CHANGED), the node
    # rescans the session and grows xfs while it is mounted.
    st = expect(n, "NodeGetVolumeStats", {"volume_id": vid, "volume_path": pod_path("pod1", vid)}, "OK",
                "xfs before the expansion")
    before = int({u.get("unit"): u for u in (st or {}).get("usage", [])}.get("BYTES", {}).get("total", 0))
    expect(c, "ControllerExpandVolume", {"volume_id": vid, "volume_capability": cap,
                                         "capacity_range": {"required_bytes": str(400 * MIB)}}, "OK",
           "xfs over iSCSI to 400 MiB while mounted")
    nx = expect(n, "NodeExpandVolume", {"volume_id": vid, "volume_path": pod_path("pod1", vid),
                                        "capacity_range": {"required_bytes": str(400 * MIB)}}, "OK", "xfs online")
    h.check(nx and int(nx["capacity_bytes"]) == 400 * MIB, f"the SCSI disk is 400 MiB ({nx})")
    st = expect(n, "NodeGetVolumeStats", {"volume_id": vid, "volume_path": pod_path("pod1", vid)}, "OK",
                "xfs after the expansion")
    total = int({u.get("unit"): u for u in (st or {}).get("usage", [])}.get("BYTES", {}).get("total", 0))
    h.check(total >= before + 70 * MIB, f"xfs grew online from {before >> 20} to {total >> 20} MiB")
    unpublish(n, vid, "pod1")
    unstage(n, vid, what="iSCSI (logout)")
    rc, out = sh("iscsiadm -m session 2>&1")
    h.check("No active sessions" in out, f"logged out ({out.strip()[:100]})")
    stage(n, vid, ctx, vctx, cap, what="xfs again")
    rc, out = sh(f"cat {staging_path(vid)}/hello")
    h.check(out.strip() == "castor", "the xfs file survived")
    unstage(n, vid)
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "")
    expect(c, "DeleteVolume", {"volume_id": vid}, "OK", "")

    # ---- ext4 over NBD
    cap = mount_cap("ext4")
    vid, ctx, vctx = create_and_publish(c, "vm-nbd", cap, {"protocol": "nbd"})
    h.check(ctx["uri"].startswith(f"nbd://{GUEST_HOST}:"), f"NBD publish_context {ctx}")
    stage(n, vid, ctx, vctx, cap, what="ext4 over NBD")
    rc, out = sh(f"grep ' {staging_path(vid)} ' /proc/mounts")
    h.check(rc == 0 and " ext4 " in out and "/dev/nbd" in out, f"ext4 from an NBD device: {out.strip()}")
    publish(n, vid, ctx, cap, "pod1")
    rc, _ = sh(f"echo over-nbd >{pod_path('pod1', vid)}/hello && sync")
    h.check(rc == 0, "a file written over NBD")
    expect(n, "NodeExpandVolume", {"volume_id": vid, "volume_path": pod_path("pod1", vid)}, "FAILED_PRECONDITION",
           "over NBD (no way to tell the client a new size)")
    unpublish(n, vid, "pod1")
    unstage(n, vid, what="NBD (disconnect)")
    rc, out = sh("cat /sys/block/nbd0/size")
    h.check(out.strip() == "0", f"/dev/nbd0 disconnected (size {out.strip()})")
    stage(n, vid, ctx, vctx, cap, what="NBD again")
    rc, out = sh(f"cat {staging_path(vid)}/hello")
    h.check(out.strip() == "over-nbd", "the file is there over NBD")
    unstage(n, vid)
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "")
    expect(c, "DeleteVolume", {"volume_id": vid}, "OK", "")

    # ---- raw block over NVMe/TCP
    vid, ctx, vctx = create_and_publish(c, "vm-block", BLOCK, {})
    stage(n, vid, ctx, vctx, BLOCK, block=True, what="block")
    publish(n, vid, ctx, BLOCK, "podb", block=True, what="block onto a file")
    t = pod_path("podb", vid, block=True)
    rc, out = sh(f"dd if=/dev/urandom of=/tmp/pat bs=1M count=2 2>/dev/null && dd if=/tmp/pat of={t} bs=1M "
                 f"seek=3 oflag=direct conv=fsync 2>/dev/null && dd if={t} of=/tmp/back bs=1M skip=3 count=2 "
                 f"iflag=direct 2>/dev/null && cmp /tmp/pat /tmp/back && echo same")
    h.check(rc == 0 and "same" in out, f"data through the published device file ({out.strip()})")
    st = expect(n, "NodeGetVolumeStats", {"volume_id": vid, "volume_path": t}, "OK", "of a block volume")
    h.check(st and int(st["usage"][0]["total"]) == 64 * MIB, f"the device's size ({st})")
    # The device goes away under the published volume: the stats say so, and the teardown
    # still completes.
    rc, out = sh(f"nvme disconnect -n {ctx['uri'].rsplit('/', 1)[1]}")
    h.check(rc == 0, f"controller disconnected behind the plugin's back ({out.strip()})")
    st = expect(n, "NodeGetVolumeStats", {"volume_id": vid, "volume_path": t}, "OK", "with the device gone")
    cond = (st or {}).get("volume_condition", {})
    h.check(cond.get("abnormal") is True and "gone" in cond.get("message", ""), f"abnormal condition {cond}")
    unpublish(n, vid, "podb", block=True)
    rc, _ = sh(f"test -e {t}")
    h.check(rc != 0, "the device file removed")
    # Left staged with its target gone, the volume is published again at another address
    # (n1 cordoned: the nexus goes to n2), as after a node was away: staging it again
    # replaces the stale record and connects to the new target.
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "")
    code, _ = CTL["ctl"].call("PUT", "/v1/nodes/n1/cordon")
    h.check(code == 200, "n1 cordoned")
    pub = expect(c, "ControllerPublishVolume", {"volume_id": vid, "node_id": "n1", "volume_capability": BLOCK},
                 "OK", "with n1 cordoned")
    moved = for_guest(pub["publish_context"]) if pub else ctx
    h.check(pub and pub["publish_context"]["nexus_node"] == "n2" and moved["uri"] != ctx["uri"],
            f"the nexus is on n2 at another address ({moved['uri']})")
    stage(n, vid, moved, vctx, BLOCK, block=True, what="again at the new address")
    publish(n, vid, moved, BLOCK, "podb", block=True, what="again")
    rc, out = sh(f"dd if={t} of=/tmp/back bs=1M skip=3 count=2 iflag=direct 2>/dev/null && cmp /tmp/pat /tmp/back "
                 f"&& echo same")
    h.check(rc == 0 and "same" in out, f"the data read through the new target ({out.strip()})")
    unpublish(n, vid, "podb", block=True)
    unstage(n, vid, block=True)
    rc, out = sh("ls /sys/class/nvme/ 2>/dev/null | wc -l")
    h.check(out.strip() == "0", "no controller left")
    CTL["ctl"].call("DELETE", "/v1/nodes/n1/cordon")
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "")
    expect(c, "DeleteVolume", {"volume_id": vid}, "OK", "")

    move_scenario(c, n)
    kill_scenario(c, n)

    expect(n, "NodeUnpublishVolume", {"volume_id": "fake-vol-id", "target_path": "/tmp/none"}, "OK",
           "of an unknown volume")
    expect(n, "NodeUnstageVolume", {"volume_id": "fake-vol-id", "staging_target_path": "/tmp/none"}, "OK",
           "of an unknown volume")
    expect(n, "NodeUnpublishVolume", {"volume_id": "v"}, "INVALID_ARGUMENT", "without a target")
    rc, out = sh("ls /var/lib/castor-csi/volumes | wc -l")
    h.check(out.strip() == "0", "no volume record left on the node")


def nvme_paths(nqn):
    """The guest's controllers of subsystem `nqn`: [(name, state, address)]."""
    _, out = sh(f"for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/subsysnqn)\" = {nqn} ] && "
                f"echo \"${{c##*/}} $(cat $c/state) $(cat $c/address)\"; done")
    # A controller being deleted or reconnecting may show no address yet: three fields always.
    return [tuple((line.split(None, 2) + ["", ""])[:3]) for line in out.splitlines() if line.strip()]


def move_scenario(c, n):
    """A mounted volume follows its nexus to another engine (n1 drained) under a writer."""
    cap = mount_cap("ext4")
    vid, ctx, vctx = create_and_publish(c, "vm-move", cap, {"repl": "2"})
    h.check(ctx.get("nexus_node") == "n1", f"the nexus on n1 ({ctx})")
    stage(n, vid, ctx, vctx, cap, what="the volume that will move")
    publish(n, vid, ctx, cap, "podm")
    p = pod_path("podm", vid)
    nqn = ctx["uri"].rsplit("/", 1)[1]
    paths = nvme_paths(nqn)
    h.check(len(paths) == 1 and paths[0][1] == "live", f"one live path ({paths})")
    rc, out = sh("ls /sys/block | grep -c 'nvme[0-9]*c[0-9]*n'")
    h.check(out.strip() == "1", f"native multipath: a hidden path disk under the namespace head ({out.strip()})")
    # A writer in the guest: 60 files of 256 KiB, each synced and checksummed.
    rc, _ = sh(f"(i=0; while [ $i -lt 60 ]; do dd if=/dev/urandom of={p}/f$i bs=64k count=4 conv=fsync "
               f"2>/dev/null || echo ERR $i; md5sum {p}/f$i >>/tmp/sums; i=$((i+1)); usleep 150000; done; "
               f"echo DONE) >/tmp/writer.log 2>&1 &")
    h.check(rc == 0, "writer started")
    time.sleep(2)
    code, _ = CTL["ctl"].call("PUT", "/v1/nodes/n1/drain")
    h.check(code == 200, "n1 drained")

    def moved():
        code, v = CTL["ctl"].call("GET", f"/v1/volumes/{vid}")
        t = v.get("target", {}) if code == 200 else {}
        return t.get("node") == "n2" and t.get("uri") and t["uri"] != ctx["uri"] and t["uri"]
    new_uri = h.until("castor-control moved the nexus to n2", moved, timeout=60)
    new_addr = new_uri.split("://", 1)[1].split("/", 1)[0] if new_uri else ""

    def followed():
        ps = nvme_paths(nqn)
        live = [x for x in ps if x[1] == "live"]
        return len(ps) == 1 and live and f"trsvcid={new_addr.rsplit(':', 1)[1]}" in live[0][2] and ps
    h.until("the node plugin connected the new path and dropped the old one", followed, timeout=90)
    h.until("the writer finished", lambda: "DONE" in sh("cat /tmp/writer.log")[1], timeout=180)
    rc, out = sh("cat /tmp/writer.log")
    h.check("ERR" not in out, f"the writer saw no error ({out.strip()[-200:]})")
    rc, out = sh("md5sum -c /tmp/sums 2>&1 | grep -vc ': OK$'; wc -l </tmp/sums")
    h.check(out.split() == ["0", "60"], f"all 60 files read back equal ({out.split()})")
    rc, out = sh("dmesg | grep -i -E 'i/o error|buffer i/o|ext4.*error' | head -3")
    h.check(not out.strip(), f"no I/O error in the kernel ({out.strip()})")
    rc, out = sh("cat /var/lib/castor-csi/volumes/" + vid + ".json")
    h.check(new_addr and new_addr in out, "the node's record names the new address")
    unpublish(n, vid, "podm")
    unstage(n, vid)
    h.check(not nvme_paths(nqn), "no path left")
    CTL["ctl"].call("DELETE", "/v1/nodes/n1/cordon")
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "")
    expect(c, "DeleteVolume", {"volume_id": vid}, "OK", "")


def ana_states(nqn):
    """The ANA state of each of the guest's paths to subsystem `nqn`: {controller: state}."""
    _, out = sh(f"for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/subsysnqn)\" = {nqn} ] && "
                f"for p in $c/nvme*c*n*; do echo \"${{c##*/}} $(cat $p/ana_state)\"; done; done")
    return dict(line.split(None, 1) for line in out.splitlines() if line.strip())


def kill_scenario(c, n):
    """A mounted volume survives kill -9 of its nexus's engine under a writer."""
    cap = mount_cap("ext4")
    vid, ctx, vctx = create_and_publish(c, "vm-kill", cap, {"repl": "2"})
    h.check(ctx.get("nexus_node") == "n1", f"the nexus on n1 ({ctx})")
    stage(n, vid, ctx, vctx, cap, what="the volume whose engine dies")
    publish(n, vid, ctx, cap, "podk")
    p = pod_path("podk", vid)
    nqn = ctx["uri"].rsplit("/", 1)[1]
    states = ana_states(nqn)
    h.check(list(states.values()) == ["optimized"], f"one path, ANA optimized ({states})")
    code, v = CTL["ctl"].call("GET", f"/v1/volumes/{vid}")
    gen = int(v.get("nexus_generation", 0)) if code == 200 else 0
    rc, _ = sh(f"rm -f /tmp/sums; (i=0; while [ $i -lt 60 ]; do dd if=/dev/urandom of={p}/k$i bs=64k count=4 "
               f"conv=fsync 2>/dev/null || echo ERR $i; md5sum {p}/k$i >>/tmp/sums; i=$((i+1)); usleep 150000; "
               f"done; echo DONE) >/tmp/writer.log 2>&1 &")
    h.check(rc == 0, "writer started")
    # And fio with verify beside it: direct random writes, each batch read back and
    # checked (crc32c) while the run goes on, through the kill and the switch-over.
    rc, _ = sh(f"(fio --name=kill --filename={p}/fio.dat --size=16M --rw=randwrite --bs=4k --ioengine=libaio "
               f"--iodepth=8 --direct=1 --verify=crc32c --verify_backlog=64 --time_based --runtime=25 "
               f"--output=/tmp/fio.out; echo \"FIO rc=$?\" >>/tmp/fio.out) >/dev/null 2>&1 &")
    h.check(rc == 0, "fio with verify started")
    time.sleep(2)
    t0 = time.monotonic()
    ENGINES["n1"].kill9()
    h.log("engine n1 killed (kill -9)")

    def moved():
        code, v = CTL["ctl"].call("GET", f"/v1/volumes/{vid}")
        t = v.get("target", {}) if code == 200 else {}
        return t.get("node") == "n2" and t.get("uri") and t["uri"] != ctx["uri"] and t["uri"]
    new_uri = h.until("castor-control re-created the nexus on n2", moved, timeout=60)
    t_moved = time.monotonic() - t0
    new_port = new_uri.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1] if new_uri else ""

    def live_on_n2():
        ps = nvme_paths(nqn)
        return any(x[1] == "live" and f"trsvcid={new_port}" in x[2] for x in ps) and ps
    h.until("the node plugin connected the path to n2", live_on_n2, timeout=90)
    h.log(f"nexus re-created on n2 {t_moved:.1f} s after the kill; new path live "
          f"{time.monotonic() - t0:.1f} s after it")
    code, v = CTL["ctl"].call("GET", f"/v1/volumes/{vid}")
    gen2 = int(v.get("nexus_generation", 0)) if code == 200 else 0
    h.check(gen2 > gen, f"the new nexus has a higher fencing generation ({gen} -> {gen2})")
    h.until("the writer finished", lambda: "DONE" in sh("cat /tmp/writer.log")[1], timeout=180)
    rc, out = sh("cat /tmp/writer.log")
    h.check("ERR" not in out, f"the writer saw no error ({out.strip()[-200:]})")
    rc, out = sh("md5sum -c /tmp/sums 2>&1 | grep -vc ': OK$'; wc -l </tmp/sums")
    h.check(out.split() == ["0", "60"], f"all 60 files read back equal ({out.split()})")
    h.until("fio finished", lambda: "FIO rc=" in sh("cat /tmp/fio.out")[1], timeout=120)
    rc, out = sh("cat /tmp/fio.out")
    h.check("FIO rc=0" in out and "verify:" not in out and " err= 0" in out,
            f"fio saw no I/O error and no verify failure ({' '.join(out.split()[-40:])})")
    rc, out = sh("dmesg | grep -i -E 'i/o error|buffer i/o|ext4.*error' | head -3")
    h.check(not out.strip(), f"no I/O error in the kernel ({out.strip()})")
    states = ana_states(nqn)
    h.check("optimized" in states.values(), f"the live path is ANA optimized ({states})")
    rc, out = sh(f"nvme list-subsys 2>&1 | grep -A6 {nqn} | head -8")
    h.log(f"nvme list-subsys: {' | '.join(line.strip() for line in out.splitlines())}")
    # The engine comes back; the volume is healed to two replicas (one rebuilt).
    ENGINES["n1"].start()
    h.until("the volume healed to two online replicas", lambda: h.healthy(CTL["ctl"], vid, 2), timeout=120)
    unpublish(n, vid, "podk")
    unstage(n, vid)
    h.check(not nvme_paths(nqn), "no path left")
    expect(c, "ControllerUnpublishVolume", {"volume_id": vid, "node_id": "n1"}, "OK", "")
    expect(c, "DeleteVolume", {"volume_id": vid}, "OK", "")


if __name__ == "__main__":
    if len(sys.argv) < 8:
        raise SystemExit(__doc__)
    h.enter_netns([GUEST_HOST])
    ARGS["csi"], ARGS["desc"], ARGS["guest"] = (os.path.abspath(a) for a in sys.argv[5:8])
    h.init(sys.argv[:5])
    h.run(["node"], globals())
