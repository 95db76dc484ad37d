#!/usr/bin/env python3
"""castor-control with real engines on loopback: the control plane places, publishes and
heals volumes by itself.

    cluster_test.py CASTOR_CONTROL CASTOR_ENGINE CASTORCTL CASTOR_PERF [scenario ...]

Scenarios (default: all):
  heal       a 3-replica volume under a verifying writer (castor-perf --verify); a
             replica's engine is killed with SIGKILL, then castor-control twice during
             the heal (seeded); the writer sees no error; the
             control plane places a new replica on the spare node, rebuilds it and drops
             the lost one; the returning node's orphan replica is garbage-collected.
  move       the engine holding the nexus is killed with SIGKILL; the control plane
             re-creates the nexus on another node from the current replicas and
             publishes it at the same NQN; data written before reads back the same; a
             verifying writer through Castor's multipath host (castor-perf --bdev, the
             other engines as paths) runs through the kill without an I/O error.
  crash      castor-control is killed with SIGKILL in the middle of creates, then of
             publishes and unpublishes (random delays; the seed is printed, CASTOR_SEED
             replays it); after each restart every volume is whole or gone, no engine
             holds a replica no spec names, and every target's nexus is published where
             its spec says and nowhere else.
  splitbrain the engine holding the nexus (with two remote replicas) is frozen (SIGSTOP: to
             the cluster it is partitioned away, with a writer's I/O in flight);
             castor-control re-creates the nexus elsewhere with a higher fencing
             generation and a second writer runs there without error; then the old
             engine resumes: its nexus meets Reservation Conflict on the replica it still
             reaches and fences itself (it acknowledges nothing more); the volume heals
             and its two replicas are equal block for block.
  partition  the same with a network partition instead of a freeze: the nexus's engine
             and the application's writer in a network namespace of their own, joined by
             a veth pair whose link is taken down (nothing passes, nothing is refused)
             and brought back after the nexus moved.
  badinput   malformed REST requests get 4xx errors and change nothing.
  resize     a published 3-replica volume is grown from 64 to 128 MiB under a verifying
             writer (castor-perf --verify): the writer sees no error, castor-control and
             the nexus's engine report the new size, every replica has grown, a writer
             past the old end (refused before the resize) succeeds and a verifying
             writer over the whole volume too; a volume published over NBD is refused
             (412) and keeps its size.
Everything runs in a network namespace of the test's own (unshare -n), on its loopback
(and a veth pair for the partition) with free ports, and is stopped by PID.
"""
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_harness as h  # noqa: E402
from cluster_harness import (MIB, WORK, Control, Engine, check, create_volume,  # noqa: E402
                             declare_pools, healthy, log, nodes_online, split_uri, start_multipath_writer,
                             start_writer,
                             stop_all, until, volume, writer_result)

SCENARIOS = h.init(sys.argv) or ["badinput", "heal", "move", "splitbrain", "partition", "crash", "resize"]
PERF = h.BIN.perf


def setup_cluster(n=4, extra=(), control_extra=()):
    ctl = Control(extra=control_extra)
    ctl.start()
    engines = {}
    for i in range(n):
        e = Engine(f"n{i}", ctl, extra=extra)
        e.start()
        engines[e.name] = e
    until("every node online", lambda: nodes_online(ctl) == n)
    declare_pools(ctl, list(engines))
    return ctl, engines


# ---------------------------------------------------------------- scenarios

def scenario_badinput():
    ctl, engines = setup_cluster(3)
    before = ctl.call("GET", "/v1/volumes")[1].get("volumes", [])
    cases = [
        ("PUT", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e", {"size_bytes": 0, "replica_count": 1}, 400),
        ("PUT", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e", {"size_bytes": 4097, "replica_count": 1}, 400),
        ("PUT", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e", {"size_bytes": MIB, "replica_count": 0}, 400),
        ("PUT", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e", {"size_bytes": MIB, "replica_count": 4}, 412),
        ("PUT", "/v1/volumes/not-a-uuid", {"size_bytes": MIB, "replica_count": 1}, 400),
        ("PUT", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e", {"size_bytes": 1 << 40, "replica_count": 2}, 507),
        ("PUT", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e", {"size_bytes": MIB, "replica_count": 1, "protocol": "fc"}, 400),
        ("PUT", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e", {"size_bytes": MIB, "bogus": 1}, 400),
        ("PUT", "/v1/nodes/nosuch/pools/p", {"disks": ["file:///x"]}, 404),
        ("PUT", "/v1/nodes/n0/pools/bad%20name", {"disks": ["file:///x"]}, 400),
        ("GET", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e", None, 404),
        ("GET", "/v1/volumes?starting_token=junk&max_entries=1", None, 503),
        ("PUT", "/v1/volumes/0b6f3e1c-6a52-4f0e-9c5e-2a1d3b4c5d6e/replica_count/x", None, 400),
        ("PUT", "/v1/nodes/n0/labels", {"labels": {"bad key!": "v"}}, 400),
    ]
    for method, path, body, want in cases:
        code, resp = ctl.call(method, path, body)
        check(code == want and "message" in resp, f"{method} {path} {body} -> {code} (want {want}): "
                                                  f"{resp.get('kind')} {resp.get('message')}")
    after = ctl.call("GET", "/v1/volumes")[1].get("volumes", [])
    replicas = sum(len(e.replicas()) for e in engines.values())
    check(before == after and replicas == 0, "bad requests changed nothing")
    # A duplicate with other parameters is refused; the same request again is fine.
    uid, v = create_volume(ctl, 2)
    code, _ = ctl.call("PUT", f"/v1/volumes/{uid}", {"size_bytes": 64 * MIB, "replica_count": 2})
    check(code == 200, "the same create again is OK (idempotent)")
    code, _ = ctl.call("PUT", f"/v1/volumes/{uid}", {"size_bytes": 32 * MIB, "replica_count": 2})
    check(code == 422, f"the same uuid with another size is AlreadyExists (422): {code}")
    code, _ = ctl.call("DELETE", f"/v1/volumes/{uid}")
    check(code == 200, "volume destroyed")
    check(sum(len(e.replicas()) for e in engines.values()) == 0, "its replicas are gone")
    stop_all()


def scenario_heal():
    ctl, engines = setup_cluster(4)
    uid, v = create_volume(ctl, 3)
    nodes = [r["node"] for r in v["replicas"]]
    target = nodes[0]
    code, v = ctl.call("PUT", f"/v1/volumes/{uid}/target", {"node": target})
    check(code == 200 and v["target"]["node"] == target, f"published on {target}: {v.get('target')}")
    hostport, nqn = split_uri(v["target"]["uri"])
    victim = nodes[1]
    log(f"volume {uid}: replicas on {nodes}, nexus on {target}; killing {victim} under a verifying writer")
    perf = subprocess.Popen([PERF, "-r", hostport, "-n", nqn, "-w", "randwrite", "--verify", "-q", "16",
                             "-t", "12", "--cores", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    time.sleep(3)
    engines[victim].kill9()
    # castor-control itself is killed twice in the middle of the heal (seeded delays) and
    # restarted at once: the heal must still finish, the writer see no error (the
    # engines' health-record writes retry until a castor-control answers), and nothing
    # leak.
    seed = int(os.environ.get("CASTOR_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    log(f"heal: castor-control kills seeded {seed} (CASTOR_SEED={seed} replays them)")
    for k in range(2):
        delay = rng.uniform(0.5, 2.5)
        time.sleep(delay)
        ctl.kill9()
        log(f"castor-control killed {delay:.1f} s into the heal ({k + 1} of 2); restarting it")
        ctl.start()
    out, _ = perf.communicate(timeout=120)
    check(perf.returncode == 0, f"the writer saw no error and no mismatch (rc {perf.returncode})")
    if perf.returncode != 0:
        print(out[-3000:])
    healed = until("the volume heals by itself: 3 online replicas, none on the lost node",
                   lambda: healthy(ctl, uid, 3, avoid=(victim,)), timeout=90)
    if healed:
        spare = [r["node"] for r in healed["replicas"] if r["node"] not in nodes]
        check(len(spare) == 1, f"the new replica is on the spare node ({spare})")
    # Data verified again after the rebuild, with the new replica in the read set.
    r = subprocess.run([PERF, "-r", hostport, "-n", nqn, "-w", "randwrite", "--verify", "-q", "8",
                        "-t", "3", "--cores", "1"], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "a verifying writer after the heal succeeds")
    # The lost node comes back: its replica is in no spec any more and is collected.
    engines[victim].start()
    until(f"{victim}'s orphaned replica is garbage-collected once its pool is imported",
          lambda: engines[victim].pools() and not engines[victim].replicas(),
          timeout=60)
    spec = {r["uuid"] for r in (volume(ctl, uid) or {}).get("replicas", [])}
    until("no engine holds a replica the spec does not name (after the control-plane crashes)",
          lambda: {u for e in engines.values() for u in e.replicas()} == spec, timeout=30)
    stop_all()


def nexus_io(engine, op, uid, path, ctl):
    # castor-control is paused meanwhile (SIGSTOP): its reconciler would publish the
    # nexus again within a pass, faster than castorctl starts on a loaded machine.
    ctl.proc.send_signal(signal.SIGSTOP)
    try:
        try:
            engine.ctl("nexus", "unpublish", uid)
        except RuntimeError:
            pass  # not published (the reconciler had not re-published it yet)
        if op == "write":
            engine.ctl("bdev", "write", uid, "--offset", str(8 * MIB), "--file", path)
        else:
            engine.ctl("bdev", "read", uid, "--offset", str(8 * MIB), "--length", str(MIB),
                       "--file", path)
    finally:
        ctl.proc.send_signal(signal.SIGCONT)


def scenario_move():
    ctl, engines = setup_cluster(3)
    uid, v = create_volume(ctl, 2)
    nodes = [r["node"] for r in v["replicas"]]
    spare = [n for n in engines if n not in nodes][0]
    # The nexus on the node without a replica, so losing it loses no replica.
    code, v = ctl.call("PUT", f"/v1/volumes/{uid}/target", {"node": spare})
    check(code == 200 and v["target"]["node"] == spare, f"published on {spare}")
    old_uri = v["target"]["uri"]
    pattern = os.urandom(MIB)
    src = os.path.join(WORK, "pattern")
    open(src, "wb").write(pattern)
    # The published nexus is claimed by its NVMe-oF subsystem, so the engine's debug block
    # API reaches it only while it is unpublished at the engine (the reconciler publishes
    # it again once castor-control runs again).
    nexus_io(engines[spare], "write", uid, src, ctl)
    # Castor's own multipath host writes through the whole move: its first path is the
    # nexus about to die, the others every other engine's NVMe-oF listener (the one that
    # gets the new nexus connects once it serves the volume). It writes from 16 MiB on,
    # clear of the pattern at 8 MiB.
    def republished():
        out = engines[spare].ctl("nexus", "list")
        items = out if isinstance(out, list) else out.get("nexuses", [])
        return any(n["name"] == uid and n.get("uris") for n in items)
    until("the nexus published again at its engine after the pattern was written", republished)
    uri = volume(ctl, uid)["target"]["uri"]
    writer = start_multipath_writer("perf-move", uri, [e.nvmf for n, e in engines.items() if n != spare], 20,
                                    offset_mb=16)
    time.sleep(3)
    log(f"volume {uid}: nexus on {spare}; killing it under the multipath writer")
    killed_at = time.time()
    engines[spare].kill9()
    moved = until("the nexus is re-created on another node and published",
                  lambda: (lambda x: x if x and x.get("target", {}).get("node") != spare and
                           x["target"].get("uri") else None)(volume(ctl, uid)), timeout=60)
    if moved:
        log(f"nexus published on {moved['target']['node']} {time.time() - killed_at:.1f} s after the kill")
    if writer_result("perf-move", writer):
        res = h.perf_json("perf-move")
        check(res.get("ios", 0) > 0 and res.get("errors") == 0 and res.get("verify_mismatches") == 0,
              f"the multipath writer carried on over the move: {res.get('ios')} I/Os, none failed, "
              f"p99.9 latency {res.get('lat_p999_us', 0) / 1000:.0f} ms")
    if moved:
        new_node = moved["target"]["node"]
        check(split_uri(moved["target"]["uri"])[1] == split_uri(old_uri)[1],
              f"same NQN on {new_node}: {moved['target']['uri']}")
        dst = os.path.join(WORK, "readback")
        nexus_io(engines[new_node], "read", uid, dst, ctl)
        check(open(dst, "rb").read() == pattern, "data written before the move reads back the same")
    stop_all()


def split_brain(ctl, engines, uid, old, isolate, rejoin, how):
    """The volume's nexus on `old` is cut off by isolate() with a writer's I/O in flight;
    castor-control moves it to another node with a higher generation; a writer uses the new
    nexus; then rejoin(). The old nexus must meet Reservation Conflict on its next write,
    fence itself and record nothing; once healed, both replicas are equal block for block."""
    v = volume(ctl, uid)
    gen1 = int(v.get("nexus_generation", 0))
    isolate()
    log(f"engine {old} {how} with the writer's I/O in flight")
    moved = until("the nexus is re-created on another node",
                  lambda: (lambda x: x if x and x.get("target", {}).get("node") not in (None, old) and
                           x["target"].get("uri") else None)(volume(ctl, uid)), timeout=60)
    if not moved:
        return
    new = moved["target"]["node"]
    gen2 = int(moved.get("nexus_generation", 0))
    check(gen2 > gen1, f"the new nexus on {new} has a higher fencing generation ({gen1} -> {gen2})")
    # A writer on the new nexus; meanwhile the old engine comes back (before its nexus's
    # child I/O timeout, so it still believes it serves the volume with both children).
    w2 = start_writer("perf-new", moved["target"]["uri"], 8)
    time.sleep(1)
    rejoin()
    log(f"engine {old} back")
    old_log = os.path.join(h.DIR, f"{old}.log")
    until(f"the old nexus on {old} met Reservation Conflict and fenced itself",
          lambda: "answered reservation conflict" in open(old_log, errors="replace").read(), timeout=60)
    text = open(old_log, errors="replace").read()
    after = text.split("fenced:", 1)[1] if "fenced:" in text else ""
    check("recorded unhealthy" not in after and "rebuild start" not in after,
          "the fenced nexus records nothing and starts no rebuild")
    writer_result("perf-new", w2)
    # Nothing the fenced nexus did reached a replica after the preempt: once the volume
    # is healed, both replicas are equal block for block.
    healed = until("the volume is healed (two replicas online)", lambda: healthy(ctl, uid, 2), timeout=120)
    if healed:
        digests = h.replica_digests(ctl, engines, healed)
        check(len(set(digests.values())) == 1, f"the two replicas are equal ({digests})")


# The old nexus's child I/O must outlive the isolation (castor-control declares a silent
# node offline after its deadline and a probe): with the default 10 s a slow machine
# would retire its children by timeout before it meets the conflict.
SPLIT_BRAIN_CONTROL = ("--nexus-child-io-timeout-ms", "60000")


def scenario_splitbrain():
    # The old nexus's engine frozen (SIGSTOP): its sockets still take what it had sent.
    ctl, engines = setup_cluster(3, control_extra=SPLIT_BRAIN_CONTROL)
    uid, v = create_volume(ctl, 2)
    nodes = [r["node"] for r in v["replicas"]]
    old = [n for n in engines if n not in nodes][0]
    code, v = ctl.call("PUT", f"/v1/volumes/{uid}/target", {"node": old})
    check(code == 200 and v["target"]["node"] == old, f"published on {old} (both replicas remote to it)")
    w1 = start_writer("perf-old", v["target"]["uri"], 40)
    time.sleep(2)
    split_brain(ctl, engines, uid, old, lambda: engines[old].proc.send_signal(signal.SIGSTOP),
                lambda: engines[old].proc.send_signal(signal.SIGCONT), "frozen (SIGSTOP)")
    w1.kill()
    w1.wait()
    stop_all()


def scenario_partition():
    # The old nexus's engine, and the application writing through it, in a network
    # namespace of their own whose link to the rest is taken down and brought back: a
    # network partition, the engine running on throughout.
    ns = h.NetNs().up()
    ctl = Control(extra=SPLIT_BRAIN_CONTROL, listen=ns.HERE)
    ctl.start()
    engines = {}
    for name, addr, wrap in (("n0", ns.HERE, ()), ("n1", ns.HERE, ()), ("n2", ns.THERE, ns.wrap())):
        engines[name] = Engine(name, ctl, listen=addr, extra=["--node-address", addr], wrap=wrap)
        engines[name].start()
    until("every node online", lambda: nodes_online(ctl) == 3)
    declare_pools(ctl, ["n0", "n1"])  # the replicas on this side; n2 only hosts the nexus
    uid, v = create_volume(ctl, 2)
    code, v = ctl.call("PUT", f"/v1/volumes/{uid}/target", {"node": "n2"})
    check(code == 200 and v.get("target", {}).get("node") == "n2", "published on n2, across the link")
    hostport, nqn = split_uri(v["target"]["uri"])
    w1 = h.spawn("perf-old", ns.wrap() + [h.BIN.perf, "-r", hostport, "-n", nqn, "-w", "randwrite", "--verify",
                                          "-q", "16", "-t", "40", "--cores", "1"])
    time.sleep(2)
    split_brain(ctl, engines, uid, "n2", ns.cut, ns.heal, "cut off (its link down)")
    w1.kill()
    w1.wait()
    stop_all()
    ns.remove()


def scenario_crash():
    seed = int(os.environ.get("CASTOR_SEED", random.randrange(1 << 30)))
    log(f"crash scenario seed {seed} (CASTOR_SEED={seed} replays it)")
    rng = random.Random(seed)
    ctl, engines = setup_cluster(3)
    made = []
    for round_ in range(4):
        results = []

        def creator():
            for _ in range(40):
                try:
                    import uuid as uuidlib
                    uid = str(uuidlib.uuid4())
                    code, _ = ctl.call("PUT", f"/v1/volumes/{uid}", {"size_bytes": 8 * MIB, "replica_count": 2,
                                                                      "thin": True})
                    results.append((uid, code))
                except Exception as e:  # the connection dies with the process
                    results.append((None, str(e)))
                    return

        t = threading.Thread(target=creator)
        t.start()
        delay = rng.uniform(0.05, 0.4)
        time.sleep(delay)
        ctl.kill9()
        t.join()
        log(f"round {round_}: castor-control killed after {delay:.2f} s; {len(results)} request(s) answered")
        ctl.start()
        # Engines re-register through their heartbeats (until then creates are refused:
        # too few nodes online).
        until("every node online again", lambda: len([x for x in ctl.call("GET", "/v1/nodes")[1]
                                                      .get("nodes", []) if x["status"] == "online"]) == 3)
        made += [u for u, c in results if c == 200]
    # Then publishes and unpublishes, killed in the middle the same way: afterwards every
    # volume's target has its nexus published on that node, and no engine keeps a nexus
    # no spec names.
    pub_targets = made[:12]
    for round_ in range(3):
        answered = []

        def toggler():
            for uid in pub_targets:
                try:
                    if rng_pub.random() < 0.7:
                        code, _ = ctl.call("PUT", f"/v1/volumes/{uid}/target", {})
                    else:
                        code, _ = ctl.call("DELETE", f"/v1/volumes/{uid}/target")
                    answered.append(code)
                except Exception:
                    return

        rng_pub = random.Random(seed + round_)
        t = threading.Thread(target=toggler)
        t.start()
        delay = rng.uniform(0.02, 0.3)
        time.sleep(delay)
        ctl.kill9()
        t.join()
        log(f"publish round {round_}: castor-control killed after {delay:.2f} s; {len(answered)} answered")
        ctl.start()
        until("every node online again", lambda: len([x for x in ctl.call("GET", "/v1/nodes")[1]
                                                      .get("nodes", []) if x["status"] == "online"]) == 3)

    def nexuses_match():
        vols = ctl.call("GET", "/v1/volumes")[1].get("volumes", [])
        want = {(v["target"]["node"], v["uuid"]) for v in vols
                if v.get("target", {}).get("node") and v["target"].get("uri")}
        unfinished = [v["uuid"] for v in vols if v.get("target", {}).get("node") and not v["target"].get("uri")]
        have = set()
        for name, e in engines.items():
            out = e.ctl("nexus", "list")
            items = out if isinstance(out, list) else out.get("nexuses", [])
            have |= {(name, n["name"]) for n in items if n.get("uris")}
        seen.update(nexus_want=sorted(want - have), nexus_extra=sorted(have - want), unfinished=unfinished)
        return want == have and not unfinished
    seen = {}
    until("after the publish crashes every target's nexus is published there and no other nexus is left",
          nexuses_match, timeout=60)
    if seen.get("nexus_want") or seen.get("nexus_extra") or seen.get("unfinished"):
        print(f"nexuses not settled: {seen}")

    healed_by_publish = set()

    def settled():
        vols = ctl.call("GET", "/v1/volumes")[1].get("volumes", [])
        # A replica left out of a nexus (so stale) is rebuilt by that nexus; if the volume
        # was unpublished before the rebuild finished, nothing may read the replica until
        # the next publish rebuilds it: the volume stays degraded meanwhile, as it should.
        # Publish such a volume, as its user would, and expect it whole.
        for v in vols:
            if (v["status"] == "degraded" and not v.get("target", {}).get("node") and v["uuid"] not in healed_by_publish
                    and any(r["state"] == "new" for r in v["replicas"])
                    and any(r["state"] == "online" for r in v["replicas"])):
                healed_by_publish.add(v["uuid"])
                code, _ = ctl.call("PUT", f"/v1/volumes/{v['uuid']}/target", {})
                log(f"volume {v['uuid']}: unpublished with a replica awaiting its rebuild; published: {code}")
        want = {r["uuid"] for v in vols for r in v["replicas"]}
        have = {u for e in engines.values() for u in e.replicas()}
        seen.update(status=[v for v in vols if v["status"] != "online"],
                    leaked=sorted(have - want), missing=sorted(want - have))
        if any(v["status"] != "online" for v in vols):
            return None
        return (vols, want, have) if want == have else None
    got = until("after the crashes every volume is whole and no replica is leaked", settled, timeout=60)
    if not got:
        print(f"not settled: {seen}")
    if got:
        vols, want, have = got
        uuids = {v["uuid"] for v in vols}
        check(all(u in uuids for u in made), f"every acknowledged create survived ({len(made)} of them)")
        check(all(len(v["replicas"]) == 2 for v in vols), f"{len(vols)} volume(s), each with 2 replicas")
        check(len(made) > 0 and len(vols) > len(made) // 2, "the crashes landed among acknowledged creates")
    stop_all()


def perf_region(uri, offset_mb, seconds, name):
    """A verifying castor-perf random writer from `offset_mb` to the end of the volume; its
    exit status (0: no error, no mismatch) and the tail of its output."""
    hostport, nqn = split_uri(uri)
    r = subprocess.run([PERF, "-r", hostport, "-n", nqn, "-w", "randwrite", "--verify", "-q", "8", "-t",
                        str(seconds), "--cores", "1", "--offset-mb", str(offset_mb)],
                       capture_output=True, text=True, timeout=120)
    log(f"{name}: rc {r.returncode}: {(r.stdout + r.stderr).strip().splitlines()[-1:]}")
    return r.returncode, (r.stdout + r.stderr)[-2000:]


def scenario_resize():
    ctl, engines = setup_cluster(4, extra=("--nbd-listen", "127.0.0.1:0"))
    uid, v = create_volume(ctl, 3, size_mb=64)
    nodes = [r["node"] for r in v["replicas"]]
    target = nodes[0]  # one local child, two nvmf:// ones
    code, v = ctl.call("PUT", f"/v1/volumes/{uid}/target", {"node": target})
    check(code == 200 and v.get("target", {}).get("uri"), f"published on {target}: {v.get('target')}")
    uri = v["target"]["uri"]
    rc, out = perf_region(uri, 64, 1, "writer past the end before the resize")
    check(rc != 0, "before the resize a writer past 64 MiB is refused (the region is past the end)")

    writer = start_writer("perf-resize", uri, 12)
    time.sleep(3)
    check(writer.poll() is None, "the verifying writer is running when the resize starts")
    t0 = time.time()
    code, v = ctl.call("PUT", f"/v1/volumes/{uid}/size", {"size_bytes": 128 * MIB})
    check(code == 200 and int(v.get("size_bytes", 0)) == 128 * MIB,
          f"ResizeVolume of the published volume to 128 MiB: {code} {v.get('message', '')} "
          f"({time.time() - t0:.1f} s)")
    check(v.get("target", {}).get("uri") == uri, "the same target, still published")
    check(writer.poll() is None, "the writer was still running when the resize returned")
    writer_result("perf-resize", writer)

    got = volume(ctl, uid) or {}
    check(int(got.get("size_bytes", 0)) == 128 * MIB and got.get("status") == "online",
          f"castor-control reports 128 MiB, online: {got.get('size_bytes')} {got.get('status')}")
    nexus = engines[target].ctl("nexus", "show", uid)
    check(nexus.get("size_bytes") == 128 * MIB and nexus.get("state") == "online",
          f"the nexus on {target} is 128 MiB and online: {nexus.get('size_bytes')} {nexus.get('state')}")
    sizes = {}
    for name, e in engines.items():
        out = e.ctl("replica", "list")
        for r in (out if isinstance(out, list) else out.get("replicas", [])):
            sizes[r["uuid"]] = int(r["size_bytes"])
    want = {r["uuid"] for r in got.get("replicas", [])}
    check(len(want) == 3 and all(sizes.get(u) == 128 * MIB for u in want),
          f"every replica is 128 MiB: {[sizes.get(u) for u in want]}")

    rc, out = perf_region(uri, 64, 3, "writer past the old end")
    check(rc == 0, "a verifying writer from 64 MiB to the new end succeeds")
    if rc != 0:
        print(out)
    rc, out = perf_region(uri, 0, 3, "writer over the whole volume")
    check(rc == 0, "a verifying writer over the whole grown volume succeeds")
    if rc != 0:
        print(out)
    # The same size again is fine; smaller is refused.
    code, _ = ctl.call("PUT", f"/v1/volumes/{uid}/size", {"size_bytes": 128 * MIB})
    check(code == 200, f"the same size again is OK ({code})")
    code, resp = ctl.call("PUT", f"/v1/volumes/{uid}/size", {"size_bytes": 64 * MIB})
    check(code == 400, f"shrinking is refused with 400 ({code} {resp.get('message')})")

    # NBD cannot announce a new size: refused while published over it.
    nuid, nv = create_volume(ctl, 1, size_mb=32, protocol="nbd")
    code, nv = ctl.call("PUT", f"/v1/volumes/{nuid}/target", {})
    check(code == 200 and nv.get("target", {}).get("uri", "").startswith("nbd://"),
          f"an NBD volume published: {code} {nv.get('target', nv.get('message'))}")
    code, resp = ctl.call("PUT", f"/v1/volumes/{nuid}/size", {"size_bytes": 64 * MIB})
    check(code == 412 and "NBD" in resp.get("message", ""),
          f"resizing it is FAILED_PRECONDITION (412): {code} {resp.get('message')}")
    check(int((volume(ctl, nuid) or {}).get("size_bytes", 0)) == 32 * MIB, "it keeps its size")
    stop_all()


if __name__ == "__main__":
    h.enter_netns()
    random.seed()
    h.run(SCENARIOS, globals())
