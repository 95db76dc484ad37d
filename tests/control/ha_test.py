#!/usr/bin/env python3
"""castor-control high availability on a real etcd: two castor-controls on one etcd (a
leader and a standby, --lease-ttl-s 2), three engines that know both
(--control A,B; one of them lists B first), everything on 127.0.0.1.

    ha_test.py CASTOR_CONTROL CASTOR_ENGINE CASTORCTL CASTOR_PERF [scenario ...]

Scenarios (default: all):
  failover   a published 2-replica volume under a verifying writer (castor-perf
             --verify); the leader is killed with SIGKILL; the standby leads within a few
             seconds, the engines re-register with it, the volume's spec is intact, a new
             volume is created and published through it, the writer sees no error; the old
             leader, started again, waits as a standby.
  fenced     the leader is stopped (SIGSTOP) for longer than the lease TTL; the standby
             takes over and creates a volume; a create is sent to the stopped leader; on
             SIGCONT the deposed leader exits with status 3 and the store is unchanged (the
             volume documents in etcd, read directly, and the volumes the new leader
             lists).
  etcd       etcd is killed with SIGKILL under a verifying writer and started again 3 s
             later on the same data directory and ports. The writer sees no error (the data
             path does not use the store). The leader cannot confirm its lease for a whole
             TTL while etcd is down, so it exits with status 3 (it cannot know whether its
             lease outlived the outage); the test restarts it, as a supervisor would. The
             standby rides the outage out in its campaign and leads once etcd is back and
             the old lease has run out; a create + publish then succeeds within a bound.
Fails (never skips) if /usr/bin/etcd (Debian's etcd-server) is missing. Every process is
stopped by PID; on failure the tail of every log is printed (KEEP=1 keeps them).
"""
import os
import signal
import sys
import threading
import time
import uuid as uuidlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_harness as h  # noqa: E402
from cluster_harness import (MIB, Control, Engine, Etcd, check, create_volume,  # noqa: E402
                             declare_pools, free_port, healthy, log, nodes_online, publish,
                             start_writer, until, volume, writer_result)

SCENARIOS = h.init(sys.argv) or ["failover", "fenced", "etcd"]
LEASE_TTL_S = 2
VOLUMES_PREFIX = "/castor/v1/volumes/"


def setup_ha(n=3):
    """etcd, castor-control A (leading), B (standby) and `n` engines with --control A,B."""
    etcd = Etcd().start()
    flags = ["--lease-ttl-s", str(LEASE_TTL_S)]
    a = Control("control-a", store=etcd.uri, grpc_port=free_port(), extra=flags).start()
    b = Control("control-b", store=etcd.uri, grpc_port=free_port(), extra=flags).start(wait=False)
    log(f"etcd on {etcd.client_port} (peer {etcd.peer_port}); control-a on {a.address} leads; "
        f"control-b on {b.address}")
    time.sleep(1.5)
    check(b.alive() and not b.leading(), "the second castor-control waits as a standby (no ready file)")
    engines = {}
    for i in range(n):
        # n1 lists the standby first: its first calls go to a port nobody listens on.
        control = f"{b.address},{a.address}" if i == 1 else f"{a.address},{b.address}"
        e = Engine(f"n{i}", control)
        e.start()
        engines[e.name] = e
    until("every node online", lambda: nodes_online(a) == n)
    declare_pools(a, list(engines))
    return etcd, a, b, engines


def spec_of(v):
    """What the store holds of a volume (not the reported states)."""
    if not v:
        return None
    return {"uuid": v.get("uuid"), "size_bytes": v.get("size_bytes"),
            "replica_count": v.get("replica_count"), "generation": v.get("generation"),
            "replicas": sorted((r["uuid"], r["node"], r["pool"]) for r in v.get("replicas", [])),
            "target": (v.get("target", {}).get("node"), v.get("target", {}).get("uri"))}


def create_and_publish(ctl, what):
    uid, v = create_volume(ctl, 2)
    v = publish(ctl, uid)
    check(v is not None, f"{what}: a new volume is created and published")
    return uid


def exited(proc, timeout):
    try:
        return proc.wait(timeout=timeout)
    except Exception:
        return None


def cluster_leader(ctl):
    code, info = ctl.call("GET", "/v1/cluster")
    return info if code == 200 else {}


# ---------------------------------------------------------------- scenarios

def scenario_failover():
    etcd, a, b, engines = setup_ha()
    uid, _ = create_volume(a, 2)
    v = publish(a, uid)
    if not v:
        return
    before = spec_of(volume(a, uid))
    writer = start_writer("perf-failover", v["target"]["uri"], 15)
    time.sleep(3)
    log("killing the leader (control-a) with SIGKILL under the writer")
    a.kill9()
    until("the standby leads: its ready file appears", b.leading, timeout=4 * LEASE_TTL_S + 4,
          every=0.1)
    until("every engine re-registers with the new leader", lambda: nodes_online(b) == 3,
          timeout=15, every=0.1)
    check(spec_of(volume(b, uid)) == before, f"the volume's spec is intact at the new leader: {before}")
    create_and_publish(b, "after the failover")
    writer_result("perf-failover", writer)
    until("the first volume is healthy at the new leader", lambda: healthy(b, uid, 2), timeout=30)
    info = cluster_leader(b)
    check(info.get("leading") and info.get("identity") == "control-b",
          f"control-b reports itself leading ({info.get('leader')}, {info.get('identity')})")
    # The old leader, started again, is now the standby.
    a.start(wait=False)
    time.sleep(2)
    check(a.alive() and not a.leading(), "control-a, started again, waits as a standby")


def stable_volumes(etcd):
    """The volume documents in etcd once two reads 1 s apart agree (the new leader's
    reconciler has settled)."""
    prev = None

    def settled():
        nonlocal prev
        cur = etcd.range(VOLUMES_PREFIX)
        same = cur == prev
        prev = cur
        return cur if same else None
    return until("the volume documents in etcd are steady", settled, timeout=30, every=1.0)


def scenario_fenced():
    etcd, a, b, engines = setup_ha()
    uid, _ = create_volume(a, 2)
    publish(a, uid)
    log("stopping the leader (control-a) with SIGSTOP")
    a.proc.send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    until("the standby leads while the leader is stopped", b.leading, timeout=4 * LEASE_TTL_S + 4,
          every=0.1)
    until("every engine re-registers with the new leader", lambda: nodes_online(b) == 3,
          timeout=15, every=0.1)
    uid2 = create_and_publish(b, "while the old leader is stopped")
    until("both volumes healthy at the new leader",
          lambda: healthy(b, uid, 2) and healthy(b, uid2, 2), timeout=30)
    raw_before = stable_volumes(etcd)
    listed_before = b.call("GET", "/v1/volumes")[1].get("volumes", [])
    stopped = time.time() - stopped_at
    if stopped < 3 * LEASE_TTL_S:
        time.sleep(3 * LEASE_TTL_S - stopped)
    # A create for the stopped leader: its REST socket takes the connection, and the
    # request waits there until it runs again.
    ghost = str(uuidlib.uuid4())
    answer = {}

    def ghost_create():
        try:
            answer["code"] = a.call("PUT", f"/v1/volumes/{ghost}",
                                    {"size_bytes": 16 * MIB, "replica_count": 1}, timeout=20)[0]
        except Exception as e:  # the connection dies with the process
            answer["error"] = repr(e)
    t = threading.Thread(target=ghost_create)
    t.start()
    time.sleep(0.5)
    log(f"resuming control-a (SIGCONT) after {time.time() - stopped_at:.1f} s stopped, "
        "with a create waiting for it")
    a.proc.send_signal(signal.SIGCONT)
    rc = exited(a.proc, 20)
    t.join()
    check(rc == 3, f"the deposed leader exits with status 3 (rc {rc})")
    check(answer.get("code") != 200, f"the create sent to the deposed leader was not acknowledged "
                                     f"({answer})")
    raw_after = etcd.range(VOLUMES_PREFIX)
    check(raw_after == raw_before,
          f"no volume document in etcd changed ({len(raw_before)} documents, same values and "
          "revisions)")
    listed_after = b.call("GET", "/v1/volumes")[1].get("volumes", [])
    check([spec_of(x) for x in listed_after] == [spec_of(x) for x in listed_before],
          "the volumes the new leader lists are exactly what it wrote")
    check(ghost not in {x["uuid"] for x in listed_after}, "the deposed leader's create left nothing")
    text = a.log_text()
    fenced_write = "refused by the fence" in text
    check("leadership lost" in text,
          "control-a's log shows the leadership loss" +
          (" (found by a fenced write)" if fenced_write else " (found by its keep-alive check)"))
    check(b.alive() and b.leading(), "control-b still leads")
    named = {r["uuid"] for x in listed_after for r in x.get("replicas", [])}
    held = {r for e in engines.values() for r in e.replicas()}
    check(held == named, f"the engines hold exactly the replicas the specs name ({len(held)}; "
                         f"held {sorted(held)}, named {sorted(named)})")


def scenario_etcd():
    etcd, a, b, engines = setup_ha()
    uid, _ = create_volume(a, 2)
    v = publish(a, uid)
    if not v:
        return
    before = spec_of(volume(a, uid))
    writer = start_writer("perf-etcd", v["target"]["uri"], 20)
    time.sleep(3)
    log("killing etcd with SIGKILL under the writer")
    etcd.kill9()
    killed_at = time.time()
    time.sleep(3)
    gone_while_down = a.proc.poll()
    etcd.start()
    back_at = time.time()
    log(f"etcd started again after {back_at - killed_at:.1f} s (same data directory and ports)")
    # Down for longer than the lease TTL: the leader cannot confirm its lease, so it gives
    # the leadership up and exits 3 (before etcd is back).
    rc = exited(a.proc, 10)
    check(rc == 3 and gone_while_down == 3,
          f"the leader exits with status 3 while etcd is down: it could not confirm its lease "
          f"for a TTL (rc {rc})")
    check(b.alive(), "the standby rode out the outage")
    a.start(wait=False)  # what its supervisor does
    leader = until("a castor-control leads again",
                   lambda: b if b.leading() else (a if a.leading() else None), timeout=30, every=0.1)
    if not leader:
        writer_result("perf-etcd", writer)
        return
    other = a if leader is b else b
    log(f"{leader.name} leads {time.time() - back_at:.1f} s after etcd's restart")
    until("every engine registers with it", lambda: nodes_online(leader) == 3, timeout=15, every=0.1)
    check(spec_of(volume(leader, uid)) == before, "the volume's spec is intact")
    create_and_publish(leader, "after the etcd restart")
    took = time.time() - back_at
    check(took < 20, f"the control plane works again {took:.1f} s after etcd's restart (bound 20 s)")
    writer_result("perf-etcd", writer)
    check(other.alive() and not other.leading(), f"{other.name} waits as the standby")
    until("the first volume is healthy", lambda: healthy(leader, uid, 2), timeout=30)


if __name__ == "__main__":
    h.run(SCENARIOS, globals())
