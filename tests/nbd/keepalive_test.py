#!/usr/bin/env python3
"""NBD clients that vanish are cut off (TCP keepalive and user timeout, --nbd-keepalive-s).

Runs itself in a new network namespace (unshare -n, as root), where taking the loopback
interface down makes every peer vanish at once without a FIN or RST, like a host that
lost power. The engine runs with --nbd-keepalive-s 1: probes after 1 s of silence, the
client cut off after 2 s without an answer. Clients are raw sockets speaking NBD.

  * An idle client whose kernel answers the probes stays connected (3 s of silence, then
    a READ on the same connection).
  * A client that asks for 16 MiB and stops reading is cut off; the idle one is not.
  * Loopback down: both remaining clients (one idle, one with nothing in flight) are cut
    off within the keepalive time; back up, the engine serves a new client.

  nbd_keepalive_test.py castor-engine        (exit 77: no network namespace here)

unshare (util-linux) and ip (iproute2) are installed by scripts/setup.sh: without them the
test fails. Only the capability to make a network namespace (root, CAP_SYS_ADMIN, a
kernel and container that allow it) may be missing: then it skips (docs/testing.md).
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from engine_script import EngineScript  # noqa: E402

engine = sys.argv[1]
if os.environ.get("CASTOR_IN_NETNS") != "1":
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            print(f"FAIL: {tool} is missing (scripts/setup.sh installs {package})")
            sys.exit(1)
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        print("SKIP: cannot make a network namespace here (needs root and CAP_SYS_ADMIN): "
              + probe.stderr.strip())
        sys.exit(77)
    env = dict(os.environ, CASTOR_IN_NETNS="1")
    sys.exit(subprocess.run(["unshare", "-n", sys.executable, __file__, engine], env=env).returncode)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        got = s.recv(n - len(b))
        if not got:
            raise ConnectionError("closed")
        b += got
    return b


def nbd_connect(port, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    magic, opt, flags = struct.unpack(">QQH", recv_exact(s, 18))
    assert magic == 0x4E42444D41474943 and opt == 0x49484156454F5054, "not an NBD server"
    name = b"disk"
    # Client flags FIXED_NEWSTYLE | NO_ZEROES, then EXPORT_NAME.
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 1, len(name)) + name)
    size, tflags = struct.unpack(">QH", recv_exact(s, 10))
    return s


cookie = 0


def send_read(s, offset, length):
    global cookie
    cookie += 1
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, cookie, offset, length))
    return cookie


def read_ok(s, offset=0, length=4096):
    """A READ whose simple reply says success and carries the data."""
    try:
        c = send_read(s, offset, length)
        magic, err, got = struct.unpack(">IIQ", recv_exact(s, 16))
        recv_exact(s, length)
        return magic == 0x67446698 and err == 0 and got == c
    except OSError:
        return False


subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
t = EngineScript(engine, ["--bdev", "malloc:///m0?size_mb=64", "--nbd-listen", "127.0.0.1:0",
                          "--nbd-export", "disk=m0", "--nbd-keepalive-s", "1"], prefix="castor-nbdka.")
check = t.check


def cut_off():
    return t.log().count("stopped answering")


def wait_cut_off(n, seconds):
    """Seconds until the engine has cut off n clients in all, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if cut_off() >= n:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


with t:
    port = t.info["nbd_port"]

    idle = nbd_connect(port)
    check(read_ok(idle), "a READ works")
    time.sleep(3)
    check(cut_off() == 0, "an idle client that answers the probes is not cut off (3 s)")
    check(read_ok(idle), "and its connection still serves a READ")

    # A client that stops reading: its replies fill its receive window and stay there.
    stuck = nbd_connect(port, rcvbuf=4096)
    send_read(stuck, 0, 16 << 20)
    took = wait_cut_off(1, 8)
    check(took is not None, "a client that stops reading is cut off" +
          ("" if took is None else f" (after {took:.1f} s)"))
    check(read_ok(idle), "the idle client is still served")

    # Vanish: nothing crosses loopback any more, not even a reset.
    quiet = nbd_connect(port)
    check(read_ok(quiet), "a third client's READ works")
    subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
    took = wait_cut_off(3, 8)
    check(took is not None, "with loopback down, both silent clients are cut off" +
          ("" if took is None else f" (after {took:.1f} s)"))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    check(read_ok(nbd_connect(port)), "loopback back up: a new client is served")
    check(t.metric("castor_nbd_dead_clients_total") == 3, "the metrics count the 3 clients cut off")
