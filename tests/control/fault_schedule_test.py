#!/usr/bin/env python3
"""Seeded, printed, replayable schedules of PROCESS-level faults against a real cluster:
castor-control (SQLite) and four castor-engines, driven through REST, with a verifying
application writer. The process-level sibling of tests/nexus/fault_schedule_test.cc (errors,
hangs and slow children inside one process).

    fault_schedule_test.py CASTOR_CONTROL CASTOR_ENGINE CASTORCTL CASTOR_PERF

CASTOR_SCHEDULES schedules (default 3) run from CASTOR_SCHEDULE_SEED (default: a random
base, printed); schedule i has seed base+i, and every random choice of a schedule comes
from random.Random(seed), so a seed replays the same events (their timing, and the
cluster's answers to them, vary). Each prints `schedule seed=<n>` and its events before it
runs; a failed one prints the command line that replays it alone
(CASTOR_SCHEDULE_SEED=<n> CASTOR_SCHEDULES=1 ...). scripts/soak-process-schedules.sh runs
many.

A schedule: a fresh cluster, each engine in a network namespace of its own (NetNs, routed
through the test's namespace, where castor-control listens on 10.231.255.1), so that any
one can be cut off; one 3-replica 128 MiB volume (thin or thick, drawn; large enough that
a full rebuild takes a few seconds under load, to be struck), published on a replica's
node or on the spare node (drawn); the application's writer is castor-perf --verify through
Castor's multipath host (--bdev nvmf://...?paths=: every engine's NVMe-oF listener, each
engine on a fixed port, so the paths stay valid across restarts and nexus moves) with
--write-log. Then 2-5 faults at drawn gaps (0.5-5 s), each one of:

  kill-replica       kill -9 of a replica's engine; restarted on its state directory and
                     node name after a drawn delay, or only at the end
  kill-nexus         kill -9 of the nexus's engine (the same); the multipath writer carries
                     on through the nexus's re-creation elsewhere (it is never restarted:
                     the test decides that a nexus kill must not cost the application an
                     error, as control_cluster's `move` shows)
  stop-replica       SIGSTOP of a replica's engine for a drawn 0.3-8 s, then SIGCONT
  partition-replica  a replica's engine cut off (its veth link down: nothing passes, nothing
                     is refused) for a drawn 0.5-8 s
  kill-control       kill -9 of castor-control, restarted after 0-2 s
  republish          the writer stopped (SIGTERM: it finishes its I/O and writes its log),
                     unpublish + publish (on a drawn node, or where castor-control likes)
                     racing a replica fault struck up to 1 s before or 2 s after the
                     unpublish, the writer started again on the published target
  scale              the replica count set to 4 or 2, racing a replica fault (or none), and
                     set back to 3 after 2-10 s (4 with an engine down until the end is
                     refused, 412, and nothing changes: an answer, not a failure)

A replica fault's victim is drawn among the replicas' engines that do not hold the nexus;
a schedule sticks to one or two victims (drawn) while they are candidates. A replica
fault may wait for a rebuild (drawn, when an earlier fault leads to one: a kill, a stop or
cut of more than 5 s, a scale): it waits until the volume's REST document shows a replica
`rebuilding` (up to 30 s, or until nothing is left to heal) and strikes the rebuild's
source (the nexus's `castorctl nexus show`) or destination, as drawn, else the other end
(the nexus's own engine is not struck this way), else a replica as drawn.

What the generator avoids, and why. The checker requires no application error only while
the nexus has a healthy child it can use, so a strike that would leave none waits (heals
run meanwhile) until it would not: a replica counts as healthy when the control plane
reports it `online`, its engine is not under a fault of ours, and its last heal has
settled: 2 s after a SIGCONT, 12 s after a restart or a cut ends (an I/O the nexus sent
before may still hang until the child I/O timeout, 10 s, retires the child; until then
castor-control may report the replica online); replicas beyond the replica count (a
scale-down pending) are taken off the count. So at most two of the
three replicas are taken away at a time, and a rebuild's source is struck only if another
healthy replica remains (else its destination is). The nexus's engine is only ever killed
(never stopped or cut off: that is split brain, control_cluster's `splitbrain` and
`partition`), and only when two healthy replicas besides its own remain and no engine
holding a replica is under a fault (a re-created nexus resyncs every child but one from
that one, so until the resync ends it has a single healthy child). Nothing is struck while
the nexus is being moved. At most one engine stays down until the end (with two, three
replicas have no room). castor-control is down for at most 2 s plus its start (an
engine's health record write waits 5 s for a castor-control; a child fault with no
castor-control for longer fails the I/O waiting for the record, by design, see
docs/control.md). The spare node is never struck (it holds nothing).

The checker: (a) every writer (each run of it between republishes) exits with no I/O
error and no verify mismatch; (b) at the end, every fault healed (every engine running
and reachable) and the volume online with 3 online replicas and no rebuild (observed once every heal has
settled), castor-perf --check-log reads back through the volume every block the writers'
acknowledged writes left, with the data last written there; (c) the three replicas, read
through their engines with the volume quiesced (castor-control stopped, the nexus
destroyed; castor-control is then killed, not resumed: it would re-create the nexus and
resync it while the engines are being stopped), are equal block for block (sha256);
(d) no process's
log holds a sanitizer report (the harness's run()). A summary line ends the run: schedules
run and failed, faults by kind, rebuilds (started, per the engines' logs; and caught in
progress and struck), the writers' I/Os.
"""
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_harness as h  # noqa: E402
from cluster_harness import Control, Engine, check, log, nodes_online, until  # noqa: E402

ARGV = list(sys.argv)
h.init(sys.argv)
CONTROL_ADDRESS = "10.231.255.1"  # castor-control's gRPC, on the test namespace's loopback
NODES = ["n0", "n1", "n2", "n3"]
NVMF_PORT = 4420
VOLUME_MB = 128        # a full rebuild takes a few seconds: long enough to strike it
POOL_MB = 512          # room for a second replica of the volume on a node (a replacement)
REPLICA_KINDS = ("kill-replica", "stop-replica", "partition-replica")
KINDS = REPLICA_KINDS + ("kill-nexus", "kill-control", "republish", "scale")
WEIGHTS = {"kill-replica": 3, "stop-replica": 2, "partition-replica": 2, "kill-nexus": 1.5, "kill-control": 1.5,
           "republish": 1, "scale": 1}
# A healed engine's replica is not counted healthy before this. After SIGCONT its I/O
# goes on at once. After a restart or a cut, an I/O the nexus sent before may still be
# hanging: the nexus retires the child only when it times out (the child I/O timeout,
# 10 s), and until then castor-control may report the replica online.
SETTLE_S = {"stopped": 2.0, "killed": 12.0, "cut off": 12.0}
STRIKE_WAIT_S = 150     # a strike waits this long at most for the volume to allow it
REBUILD_WAIT_S = 30     # a strike during a rebuild waits this long at most for one
HEAL_WAIT_S = 180       # the end: the volume healthy again within this
MAX_FAILED = 3          # a run stops after this many failed schedules


# ---------------------------------------------------------------- the generator

class Event:
    """One fault of a schedule. `pick` chooses among the candidates found when it strikes
    (victims depend on where the control plane put things), so a seed replays the same
    choices as long as the cluster answers the same way."""

    def __init__(self, kind):
        self.kind = kind
        self.gap = 0.0          # seconds after the previous event
        self.pick = 0.0         # in [0, 1): which candidate
        self.during = None      # None, or "source"/"dest": strike a running rebuild's end
        self.duration = None    # stop/partition: held this long; kill: restart after (None: at the end)
        self.racing = None      # republish/scale: the replica fault racing the call
        self.offset = 0.0       # ... struck this long after the call starts (negative: before)
        self.node_pick = None   # republish: None (castor-control chooses) or which node
        self.scale_to = 3       # scale
        self.revert_after = 0.0

    def describe(self, head=True):
        k = self.kind
        if k in ("kill-replica", "kill-nexus"):
            what = f"{k}(restart {'at the end' if self.duration is None else f'+{self.duration:.1f}s'})"
        elif k in ("stop-replica", "partition-replica"):
            what = f"{k}({self.duration:.1f}s)"
        elif k == "kill-control":
            what = f"kill-control(down {self.duration:.1f}s)"
        elif k == "republish":
            where = "anywhere" if self.node_pick is None else NODES[self.node_pick]
            what = f"republish(on {where}"
            what += f"; racing {self.offset:+.1f}s {self.racing.describe(False)})" if self.racing else ")"
        else:
            what = f"scale->{self.scale_to}(back to 3 after {self.revert_after:.1f}s"
            what += f"; racing {self.offset:+.1f}s {self.racing.describe(False)})" if self.racing else ")"
        if k in REPLICA_KINDS:
            what += f"[pick {self.pick:.2f}]"
        if self.during:
            what = f"@rebuild:{self.during} " + what
        return (f"+{self.gap:.1f}s " if head else "") + what


class Schedule:
    def __init__(self, seed):
        self.seed = seed
        self.thin = False
        self.nexus_on = "replica"  # or "spare"
        self.victims = 1
        self.events = []

    def describe(self):
        return (f"{'thin' if self.thin else 'thick'} {VOLUME_MB} MiB, nexus on a {self.nexus_on} node, "
                f"{self.victims} victim(s): " + "; ".join(e.describe() for e in self.events))


def replica_fault(rng, kind, permanent_left):
    e = Event(kind)
    e.pick = rng.random()
    if kind == "kill-replica":
        e.duration = None if permanent_left and rng.random() < 0.3 else rng.uniform(0.5, 8)
    elif kind == "stop-replica":
        e.duration = rng.uniform(0.3, 8)
    else:
        e.duration = rng.uniform(0.5, 8)
    return e


def generate(seed):
    """The schedule of `seed`: every choice from random.Random(seed)."""
    rng = random.Random(seed)
    s = Schedule(seed)
    s.thin = rng.random() < 0.5
    s.nexus_on = "replica" if rng.random() < 0.5 else "spare"
    s.victims = rng.choice((1, 2))
    permanent_left = True   # at most one engine stays down until the end
    rebuild_coming = False  # an earlier fault leads to a rebuild
    for _ in range(rng.randint(2, 5)):
        kind = rng.choices(KINDS, weights=[WEIGHTS[k] for k in KINDS])[0]
        if kind in REPLICA_KINDS:
            e = replica_fault(rng, kind, permanent_left)
        else:
            e = Event(kind)
        e.gap = rng.uniform(0.5, 5)
        if kind in REPLICA_KINDS and rebuild_coming and rng.random() < 0.5:
            e.during = rng.choice(("source", "dest"))
        if kind == "kill-nexus":
            e.duration = None if permanent_left and rng.random() < 0.3 else rng.uniform(1, 8)
        elif kind == "kill-control":
            e.duration = rng.uniform(0, 2)
        elif kind == "republish":
            e.node_pick = None if rng.random() < 0.5 else rng.randrange(len(NODES))
            e.racing = replica_fault(rng, rng.choice(REPLICA_KINDS), permanent_left)
            e.offset = rng.uniform(-1, 2)
        elif kind == "scale":
            e.scale_to = rng.choice((2, 4))
            e.revert_after = rng.uniform(2, 10)
            if rng.random() < 0.7:
                e.racing = replica_fault(rng, rng.choice(REPLICA_KINDS), permanent_left)
                e.offset = rng.uniform(-1, 2)
        for f in (e, e.racing):
            if f and f.kind in ("kill-replica", "kill-nexus") and f.duration is None:
                permanent_left = False
            # What leads to a rebuild: a kill (a replacement, a partial rebuild on return,
            # a resync), a stop or cut long enough for the node to be declared offline, a
            # scale (a new replica; after a scale-down, the one added back).
            if f and (f.kind in ("kill-replica", "kill-nexus", "scale") or
                      f.kind in ("stop-replica", "partition-replica") and f.duration > 5):
                rebuild_coming = True
        s.events.append(e)
    return s


# ---------------------------------------------------------------- a schedule's run

class Totals:
    def __init__(self):
        self.faults = {k: 0 for k in KINDS}
        self.rebuilds_started = 0
        self.rebuilds_caught = 0
        self.struck_in_rebuild = 0
        self.rebuild_missed = 0
        self.ios = 0
        self.run = 0
        self.failed = []
        self.seconds = []

    def line(self):
        faults = " ".join(f"{k}={v}" for k, v in self.faults.items())
        per = f"{sum(self.seconds) / len(self.seconds):.0f}" if self.seconds else "-"
        return (f"process fault schedules summary: run={self.run} failed={len(self.failed)} faults: {faults}; "
                f"rebuilds started={self.rebuilds_started} caught running={self.rebuilds_caught} "
                f"struck while running={self.struck_in_rebuild} none to strike={self.rebuild_missed}; "
                f"ios={self.ios}; {per} s per schedule"
                + (f"; failed seeds: {' '.join(str(x) for x in self.failed)}" if self.failed else ""))


TOTALS = Totals()


def replay_command(seed):
    script = os.path.abspath(ARGV[0])
    bins = " ".join(shlex.quote(os.path.abspath(b)) for b in ARGV[1:5])
    return f"CASTOR_SCHEDULE_SEED={seed} CASTOR_SCHEDULES=1 {sys.executable} {script} {bins}"


class Run:
    """One schedule against a fresh cluster."""

    def __init__(self, sched, slot):
        self.s = sched
        self.slot = slot            # namespaces of schedule k are 10.231.<4k+1..4k+4>
        self.heals = []             # [due, description, fn] (fn() -> True when done)
        self.impaired = {}          # node -> what we did to it
        self.settled_at = {}        # node -> when its last heal has settled (SETTLE_S)
        self.quiet_after = 0        # when every heal so far has settled
        self.struck = []            # victims so far (one or two per schedule)
        self.writer = None
        self.writer_runs = 0
        self.wlog = os.path.join(h.DIR, "writes.wlog")
        self.ios = 0
        self.caught = set()         # replicas seen rebuilding (REST)
        self.last_view = None
        self.stop_monitor = threading.Event()

    # -------------------------------------------------------- cluster

    def setup(self):
        h.NetNs.forward()
        self.ns = {}
        self.ctl = Control(listen=CONTROL_ADDRESS)
        self.ctl.start()
        self.engines = {}
        for j, name in enumerate(NODES):
            ns = h.NetNs(4 * (self.slot % 60) + j + 1).up(route=True)
            self.ns[name] = ns
            e = Engine(name, self.ctl, listen=ns.THERE, extra=["--node-address", ns.THERE], wrap=ns.wrap(),
                       nvmf_port=NVMF_PORT)
            e.start()
            self.engines[name] = e
        until("every node online", lambda: nodes_online(self.ctl) == len(NODES))
        h.declare_pools(self.ctl, NODES, size_mb=POOL_MB)
        self.uid, v = h.create_volume(self.ctl, 3, size_mb=VOLUME_MB, thin=self.s.thin)
        reps = sorted(r["node"] for r in v.get("replicas", []))
        spare = [n for n in NODES if n not in reps]
        node = reps[0] if self.s.nexus_on == "replica" or not spare else spare[0]
        v = h.publish(self.ctl, self.uid, node)
        if not v:
            raise RuntimeError("the volume could not be published")
        log(f"volume {self.uid}: replicas on {reps}, nexus on {v['target']['node']}")
        threading.Thread(target=self.monitor, daemon=True).start()
        self.start_writer(v["target"]["uri"])

    def paths(self, uri):
        hostport, _ = h.split_uri(uri)
        return [f"{self.engines[n].listen}:{NVMF_PORT}" for n in NODES
                if f"{self.engines[n].listen}:{NVMF_PORT}" != hostport]

    def start_writer(self, uri):
        self.writer_runs += 1
        self.writer_name = f"perf-w{self.writer_runs}"
        self.writer = h.start_multipath_writer(
            self.writer_name, uri, self.paths(uri), 3600,
            extra=["--write-log", self.wlog, "--seed", str(self.s.seed * 100 + self.writer_runs)])
        log(f"writer {self.writer_name} started on {uri}")

    def stop_writer(self):
        """Ends the running writer (SIGTERM: it completes its I/O, reports and writes its
        log); checks it saw no error and no mismatch."""
        w, name = self.writer, self.writer_name
        self.writer = None
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
        end = time.time() + 120
        while w.poll() is None and time.time() < end:
            self.tick()
            time.sleep(0.2)
        if w.poll() is None:
            log(f"{name} did not end within 120 s of SIGTERM: its stacks follow")
            h.dump_stacks(name, w.pid)
            w.kill()
            w.wait()
        res = h.perf_json(name)
        self.ios += int(res.get("ios", 0))
        ok = check(w.returncode == 0 and res.get("errors") == 0 and res.get("verify_mismatches") == 0,
                   f"(a) writer {name}: no I/O error and no mismatch (rc {w.returncode}, {res.get('ios')} I/Os, "
                   f"{res.get('errors')} errors, {res.get('verify_mismatches')} mismatches, "
                   f"p99.9 {res.get('lat_p999_us', 0) / 1000:.0f} ms, {res.get('write_log_blocks')} blocks logged)")
        if not ok:
            print("\n".join(open(os.path.join(h.DIR, f"{name}.log"), errors="replace").read().splitlines()[-30:]))
        return ok

    def view(self):
        """The volume's REST document, or None (castor-control down or not answering)."""
        try:
            code, v = h.rest(self.ctl.rest_url, "GET", f"/v1/volumes/{self.uid}", timeout=5)
            return v if code == 200 else None
        except Exception:
            return None

    def monitor(self):
        """Logs the volume's changes and notes every replica seen rebuilding."""
        last = None
        while not self.stop_monitor.wait(0.2):
            v = self.view()
            if not v:
                continue
            self.last_view = v
            for r in v.get("replicas", []):
                if r["state"] == "rebuilding" and r["uuid"] not in self.caught:
                    self.caught.add(r["uuid"])
            t = v.get("target", {})
            brief = (f"{v.get('status')} count={v.get('replica_count')} nexus={t.get('node')}/{t.get('state')} "
                     f"gen={v.get('nexus_generation')} replicas="
                     + ",".join(f"{r['node']}:{r['state']}" + (f"({r['rebuild_percent']:.0f}%)"
                                                                  if r["state"] == "rebuilding" else "")
                                for r in sorted(v.get("replicas", []), key=lambda r: r["node"])))
            if brief != last:
                log(f"  volume: {brief}")
                last = brief

    # -------------------------------------------------------- heals

    def schedule_heal(self, delay, what, fn):
        self.heals.append([time.time() + delay, what, fn])

    def tick(self, force=False):
        """Runs the heals that are due (all of them with `force`); a heal that cannot be
        done yet (castor-control down) is tried again."""
        now = time.time()
        for item in sorted(self.heals, key=lambda x: x[0]):
            due, what, fn = item
            if force or due <= now:
                if fn():
                    log(f"heal: {what}")
                    self.heals.remove(item)
                else:
                    item[0] = now + 0.5

    def wait(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            self.tick()
            time.sleep(min(0.1, max(0, end - time.time())))

    def mark_healed(self, node):
        how = self.impaired.pop(node, None)
        self.settled_at[node] = time.time() + SETTLE_S.get(how, 0)
        self.quiet_after = max(self.quiet_after, self.settled_at[node])

    # -------------------------------------------------------- the safety rule

    def healthy(self, v, now=None):
        """The replicas the nexus can count on: online, engine untouched, not just healed."""
        now = now or time.time()
        return [r for r in v.get("replicas", []) if r["state"] == "online" and r["node"] not in self.impaired
                and now >= self.settled_at.get(r["node"], 0)]

    def effective(self, v, count=None):
        """Healthy replicas, less any surplus a pending scale-down may retire."""
        count = v.get("replica_count", 3) if count is None else count
        live = [r for r in v.get("replicas", []) if r["state"] in ("creating", "new", "rebuilding", "online")]
        return len(self.healthy(v)) - max(0, len(live) - count)

    def target_ok(self, v):
        t = v.get("target") or {}
        return (t.get("node") and t.get("uri") and t["node"] not in self.impaired
                and t.get("state") in ("online", "degraded"))

    def replica_candidates(self, v):
        t = (v.get("target") or {}).get("node")
        nodes = sorted({r["node"] for r in v.get("replicas", []) if r["state"] != "removing"})
        cands = [n for n in nodes if n != t and n not in self.impaired]
        if len(set(self.struck)) >= self.s.victims:
            mine = [n for n in cands if n in self.struck]
            if mine:
                return mine
        return cands

    def safe_replica_strike(self, v, node, count=None, extra_take=0):
        if not v or not self.target_ok(v):
            return False
        healthy = {r["node"] for r in self.healthy(v)}
        take = (1 if node in healthy else 0) + extra_take
        return self.effective(v, count) - take >= 1

    # -------------------------------------------------------- strikes

    def strike(self, e, count=None, extra_take=0):
        """Strikes replica fault `e` (kill-replica, stop-replica, partition-replica) when
        the safety rule allows; returns the victim or None (nothing to strike in time)."""
        victim = None
        if e.during:
            victim = self.rebuild_victim(e, count, extra_take)
        end = time.time() + STRIKE_WAIT_S
        while victim is None and time.time() < end:
            v = self.view()
            if v:
                cands = self.replica_candidates(v)
                if cands:
                    node = cands[int(e.pick * len(cands))]
                    if self.safe_replica_strike(v, node, count, extra_take):
                        victim = node
                        break
            self.tick()
            time.sleep(0.2)
        if victim is None:
            check(False, f"{e.kind}: no replica could be struck within {STRIKE_WAIT_S} s without leaving the "
                         f"nexus without a healthy child (impaired: {self.impaired}; volume: {self.last_view})")
            return None
        self.do_replica_fault(e, victim)
        return victim

    def rebuild_victim(self, e, count, extra_take):
        """Waits for a rebuild; its destination's or source's node, if striking it is safe
        (a source that is not: the destination), else None."""
        end = time.time() + REBUILD_WAIT_S
        while time.time() < end:
            v = self.view()
            t = (v or {}).get("target") or {}
            dest = [r for r in (v or {}).get("replicas", []) if r["state"] == "rebuilding"]
            if dest and t.get("node") and t["node"] not in self.impaired:
                d = dest[0]
                src_node = self.rebuild_source(v, d)
                # The end drawn first, else the other (the nexus's own engine is not
                # struck here, nor a source whose loss would leave no healthy child).
                ends = [("source", src_node), ("destination", d["node"])]
                if e.during == "dest":
                    ends.reverse()
                for which, node in ends:
                    if (node and node != t["node"] and node not in self.impaired
                            and self.safe_replica_strike(v, node, count, extra_take)):
                        TOTALS.struck_in_rebuild += 1
                        log(f"{e.kind} strikes the rebuild of {d['node']} ({d.get('rebuild_percent', 0):.0f}%) at "
                            f"its {which} {node}")
                        return node
            if v and self.settled(v):
                break  # none is coming
            self.tick()
            time.sleep(0.1)
        TOTALS.rebuild_missed += 1
        log(f"{e.kind}: no rebuild to strike (none running, or none coming): striking a replica as drawn")
        return None

    def settled(self, v):
        """Nothing left to heal: no engine under a fault, every heal settled, the volume
        online with its replicas all online."""
        reps = v.get("replicas", [])
        return (not self.impaired and time.time() >= self.quiet_after and v.get("status") == "online"
                and len(reps) == v.get("replica_count") and all(r["state"] == "online" for r in reps))

    def rebuild_source(self, v, dest):
        """The node of the rebuild's source, from the nexus's engine (castorctl nexus show)."""
        t = v["target"]["node"]
        try:
            nx = self.engines[t].ctl("nexus", "show", self.uid)
        except Exception:
            return None
        by_uuid = {r["uuid"]: r["node"] for r in v.get("replicas", [])}
        for c in nx.get("children", []):
            rb = c.get("rebuild") or {}
            if rb.get("state") == "running" and dest["uuid"] in c.get("uri", ""):
                src = rb.get("source", "")
                for u, n in by_uuid.items():
                    if u in src:
                        return n
        return None

    def do_replica_fault(self, e, node):
        TOTALS.faults[e.kind] += 1
        self.struck.append(node)
        eng = self.engines[node]
        if e.kind == "kill-replica":
            self.kill_engine(node, e.duration)
        elif e.kind == "stop-replica":
            eng.proc.send_signal(signal.SIGSTOP)
            self.impaired[node] = "stopped"
            log(f"STRIKE stop-replica: {node} stopped (SIGSTOP) for {e.duration:.1f} s")

            def cont():
                eng.proc.send_signal(signal.SIGCONT)
                self.mark_healed(node)
                return True
            self.schedule_heal(e.duration, f"{node} continued (SIGCONT)", cont)
        else:
            self.ns[node].cut()
            self.impaired[node] = "cut off"
            log(f"STRIKE partition-replica: {node} cut off for {e.duration:.1f} s")

            def heal():
                self.ns[node].heal()
                self.mark_healed(node)
                return True
            self.schedule_heal(e.duration, f"{node}'s link up again", heal)

    def kill_engine(self, node, restart_after):
        self.engines[node].kill9()
        self.impaired[node] = "killed"
        log(f"STRIKE kill -9 of {node}'s engine; restart "
            f"{'at the end' if restart_after is None else f'after {restart_after:.1f} s'}")

        def restart():
            self.engines[node].start()
            self.mark_healed(node)
            return True
        if restart_after is None:
            self.schedule_heal(1e9, f"{node}'s engine restarted", restart)
        else:
            self.schedule_heal(restart_after, f"{node}'s engine restarted", restart)

    def kill_nexus(self, e):
        end = time.time() + STRIKE_WAIT_S
        while time.time() < end:
            v = self.view()
            if v and self.target_ok(v):
                t = v["target"]["node"]
                others = [r for r in self.healthy(v) if r["node"] != t]
                holders = {r["node"] for r in v.get("replicas", []) if r["state"] not in ("faulted", "removing")}
                if len(others) >= 2 and not (holders & set(self.impaired)) and v.get("replica_count") == 3:
                    TOTALS.faults["kill-nexus"] += 1
                    log(f"kill-nexus: the nexus is on {t}")
                    self.kill_engine(t, e.duration)
                    return
            self.tick()
            time.sleep(0.2)
        check(False, f"kill-nexus: the nexus could not be killed within {STRIKE_WAIT_S} s with two healthy "
                     f"replicas besides its own (impaired: {self.impaired}; volume: {self.last_view})")

    def kill_control(self, e):
        TOTALS.faults["kill-control"] += 1
        self.ctl.kill9()
        log(f"STRIKE kill -9 of castor-control; restart after {e.duration:.1f} s")
        time.sleep(e.duration)  # nothing else happens meanwhile: its downtime is bounded
        self.ctl.start()
        log("heal: castor-control restarted")

    def call(self, method, path, body=None, what="", deadline_s=90, accept=(200,)):
        """A control call, retried while castor-control is busy (503) or away, until it
        answers one of `accept`; returns the answer (None: not in time)."""
        end = time.time() + deadline_s
        last = None
        while time.time() < end:
            try:
                code, out = self.ctl.call(method, path, body, timeout=30)
                last = (code, out.get("message", ""))
                if code in accept:
                    out["_code"] = code
                    return out
            except Exception as ex:  # castor-control restarting
                last = repr(ex)
            time.sleep(0.5)
        check(False, f"{what or method + ' ' + path}: no success within {deadline_s} s (last: {last})")
        return None

    def republish(self, e):
        TOTALS.faults["republish"] += 1
        self.stop_writer()
        node = None if e.node_pick is None else NODES[e.node_pick]
        result = {}

        def calls():
            t0 = time.time()
            if self.call("DELETE", f"/v1/volumes/{self.uid}/target", what="unpublish") is None:
                return
            body = {"node": node} if node else {}
            out = self.call("PUT", f"/v1/volumes/{self.uid}/target", body, what="publish", deadline_s=120)
            if out and out.get("target", {}).get("uri"):
                result["v"] = out
                log(f"republished on {out['target']['node']} ({time.time() - t0:.1f} s)")
        th = threading.Thread(target=calls)
        log(f"republish (asking for {node or 'any node'}): unpublish + publish, racing "
            f"{e.racing.describe(False)} at {e.offset:+.1f} s")
        if e.offset < 0:
            self.strike(e.racing)
            self.wait(-e.offset)
            th.start()
        else:
            th.start()
            self.wait(e.offset)
            self.strike(e.racing)
        while th.is_alive():
            self.tick()
            th.join(0.2)
        if "v" in result:
            self.start_writer(result["v"]["target"]["uri"])
        else:
            check(False, "the volume was published again")

    def scale(self, e):
        TOTALS.faults["scale"] += 1
        n = e.scale_to
        take = 1 if n < 3 else 0

        def call():
            # A scale-down waits until it leaves a healthy replica beside the racing fault's.
            end = time.time() + STRIKE_WAIT_S
            while take and time.time() < end:
                v = self.view()
                if v and self.target_ok(v) and self.effective(v, n) - (1 if e.racing else 0) >= 1:
                    break
                self.tick()
                time.sleep(0.2)
            # 412: more replicas than online nodes (an engine killed until the end), refused
            # and nothing changed; a valid answer.
            out = self.call("PUT", f"/v1/volumes/{self.uid}/replica_count/{n}", what=f"scale to {n}",
                            accept=(200, 412))
            if out is not None:
                log(f"scaled to {n}" if out["_code"] == 200 else f"scale to {n} refused: {out.get('message')}")
        log(f"scale to {n}" + (f", racing {e.racing.describe(False)} at {e.offset:+.1f} s" if e.racing else ""))
        if e.racing and e.offset < 0:
            self.strike(e.racing, count=n)
            self.wait(-e.offset)
            call()
        else:
            call()
            if e.racing:
                self.wait(e.offset)
                self.strike(e.racing, count=n)

        def back():
            try:
                code, _ = self.ctl.call("PUT", f"/v1/volumes/{self.uid}/replica_count/3", timeout=30)
                return code == 200
            except Exception:
                return False
        self.schedule_heal(e.revert_after, "replica count back to 3", back)

    def run_event(self, e):
        self.wait(e.gap)
        log(f"event: {e.describe(False)}")
        if e.kind in REPLICA_KINDS:
            self.strike(e)
        elif e.kind == "kill-nexus":
            self.kill_nexus(e)
        elif e.kind == "kill-control":
            self.kill_control(e)
        elif e.kind == "republish":
            self.republish(e)
        else:
            self.scale(e)

    # -------------------------------------------------------- the end

    def finish(self):
        # Every fault healed: the pending heals done (at their time; an engine killed
        # until the end at once).
        end = time.time() + 120
        while self.heals and time.time() < end:
            for item in self.heals:
                if item[0] > time.time() + 60:
                    item[0] = time.time()
            self.tick()
            time.sleep(0.1)
        check(not self.heals, f"every heal done ({[what for _, what, _ in self.heals] or 'all'})")
        check(not self.impaired and all(e.proc.poll() is None for e in self.engines.values()),
              f"every fault healed: every engine running ({self.impaired or 'none impaired'})")
        def settled():
            if time.time() < self.quiet_after:
                return None  # a replica that looks online may still be retired (SETTLE_S)
            v = self.view()
            if not v or v.get("replica_count") != 3 or v.get("operation") not in (None, "", "none"):
                return None
            return h.healthy(self.ctl, self.uid, 3)
        healed = until("(b) the volume is healthy: online, 3 online replicas, no rebuild", settled,
                       timeout=HEAL_WAIT_S)
        if self.writer:
            self.stop_writer()
        self.stop_monitor.set()
        if not healed:
            return
        healed = h.volume(self.ctl, self.uid) or healed
        uri = healed["target"]["uri"]
        r = subprocess.run([h.BIN.perf, "--bdev", h.multipath_uri(uri, self.paths(uri)), "--check-log", self.wlog,
                            "-q", "32", "--cores", "1", "--json"], capture_output=True, text=True, timeout=300)
        res = next((json.loads(x) for x in reversed(r.stdout.splitlines()) if x.startswith("{")), {})
        check(r.returncode == 0 and res.get("checked", 0) > 0 and res.get("checked") == res.get("check_log_blocks")
              and res.get("verify_mismatches") == 0,
              f"(b) every acknowledged write reads back: {res.get('checked')} of {res.get('check_log_blocks')} "
              f"blocks read, {res.get('verify_mismatches')} mismatches, {res.get('errors')} errors "
              f"(rc {r.returncode})")
        if r.returncode != 0:
            print((r.stdout + r.stderr)[-3000:])
        # castor-control stays stopped and is then killed: it would re-create the nexus
        # (an unclean end to it: a full resync) while the engines are being stopped.
        try:
            digests = h.replica_digests(self.ctl, self.engines, healed, resume=False)
        finally:
            self.ctl.kill9()
        check(len(digests) == 3 and len(set(digests.values())) == 1,
              f"(c) the 3 replicas are equal block for block ({digests})")


def rebuilds_started(root):
    n = 0
    for f in os.listdir(root):
        if f.startswith("n") and f.endswith(".log"):
            n += open(os.path.join(root, f), errors="replace").read().count(" rebuild start ")
    return n


def failed_seeds():
    """The schedules during which FAILURES grew (their own checks, or the sanitizer scan
    that run() made right after them)."""
    bounds = [b for _, b in SCHEDULE_FAILURES] + [len(h.FAILURES)]
    return [seed for k, (seed, b) in enumerate(SCHEDULE_FAILURES) if bounds[k + 1] > b]


def make_scenario(seed, slot):
    def scenario():
        if len(failed_seeds()) >= MAX_FAILED:
            log(f"schedule seed={seed} not run: {MAX_FAILED} schedules failed already")
            return
        s = generate(seed)
        print(f"schedule seed={seed}: {s.describe()}", flush=True)
        before = len(h.FAILURES)
        t0 = time.time()
        run = Run(s, slot)
        TOTALS.run += 1
        try:
            run.setup()
            for e in s.events:
                run.run_event(e)
            run.finish()
        except (Exception, SystemExit) as ex:
            traceback.print_exc()
            check(False, f"schedule seed={seed} raised {ex!r}")
        finally:
            run.stop_monitor.set()
            h.stop_all()
            for ns in run.__dict__.get("ns", {}).values():
                ns.remove()
                if ns in h.NETNS:
                    h.NETNS.remove(ns)
        TOTALS.ios += run.ios
        TOTALS.rebuilds_started += rebuilds_started(h.DIR)
        TOTALS.rebuilds_caught += len(run.caught)
        TOTALS.seconds.append(time.time() - t0)
        # A sanitizer report is found after this returns (run() scans the logs); the
        # summary counts it through FAILURES' growth, see main.
        SCHEDULE_FAILURES.append((seed, before))
        if len(h.FAILURES) > before:
            print(f"FAILED schedule seed={seed}; replay it alone with:\n  {replay_command(seed)}", flush=True)
        log(f"schedule seed={seed} done in {time.time() - t0:.0f} s")
    return scenario


SCHEDULE_FAILURES = []  # (seed, len(FAILURES) when it started)


def main():
    h.enter_netns(addresses=(CONTROL_ADDRESS,))
    base = int(os.environ.get("CASTOR_SCHEDULE_SEED") or random.SystemRandom().randrange(1 << 40))
    count = int(os.environ.get("CASTOR_SCHEDULES") or 3)
    print(f"process fault schedules: {count} from seed base {base} "
          f"(replay one: CASTOR_SCHEDULE_SEED=<seed> CASTOR_SCHEDULES=1)", flush=True)
    names = []
    for i in range(count):
        name = f"seed{base + i}"
        globals()["scenario_" + name] = make_scenario(base + i, i)
        names.append(name)
    try:
        h.run(names, globals())
    finally:
        TOTALS.failed = failed_seeds()
        for seed in TOTALS.failed:
            print(f"FAILED schedule seed={seed}: {replay_command(seed)}")
        print(TOTALS.line(), flush=True)


if __name__ == "__main__":
    main()
