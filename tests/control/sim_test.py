#!/usr/bin/env python3
"""The scale simulation, small: castor-control-sim with 40 fake engines and 200 volumes,
once on SQLite and once on a real etcd (started here on free loopback ports, stopped by
PID). Each run must create, publish and converge after 10 % of the nodes fail.

    sim_test.py CASTOR_CONTROL_SIM [NODES VOLUMES]
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SIM = sys.argv[1]
NODES = sys.argv[2] if len(sys.argv) > 2 else "40"
VOLUMES = sys.argv[3] if len(sys.argv) > 3 else "200"
ETCD = "/usr/bin/etcd"
work = tempfile.mkdtemp(prefix="castor-sim-test.")
failures = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(store):
    cmd = [SIM, "--nodes", NODES, "--volumes", VOLUMES, "--timeout-s", "120", "--store", store]
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [l for l in r.stdout.splitlines()]
    print("\n".join(lines), flush=True)
    if r.returncode != 0:
        print("\n".join(r.stderr.splitlines()[-30:]))
        failures.append(store)


etcd = None
try:
    run("sqlite://" + os.path.join(work, "sim.db"))
    if not os.path.exists(ETCD):
        failures.append(f"{ETCD} is missing (run scripts/setup.sh: Debian's etcd-server)")
    else:
        client, peer = free_port(), free_port()
        etcd = subprocess.Popen(
            [ETCD, "--name", "sim", "--data-dir", os.path.join(work, "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{client}",
             "--advertise-client-urls", f"http://127.0.0.1:{client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"sim=http://127.0.0.1:{peer}"],
            stdout=open(os.path.join(work, "etcd.log"), "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1)
                break
            except Exception:
                time.sleep(0.2)
        run(f"etcd://127.0.0.1:{client}")
finally:
    if etcd:
        etcd.send_signal(signal.SIGTERM)
        try:
            etcd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            etcd.kill()
    shutil.rmtree(work, ignore_errors=True)
print(f"RESULT: {'FAIL' if failures else 'PASS'} ({len(failures)} failure(s))")
sys.exit(1 if failures else 0)
