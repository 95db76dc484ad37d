#!/usr/bin/env python3
"""Target NOP-In pings against a real initiator: libiscsi (Debian's libiscsi7, through
ctypes), with the engine pinging after 200 ms of silence (--iscsi-nop-in-ms 200).

  * An initiator that keeps servicing its socket but sends nothing answers the pings
    (libiscsi replies to a NOP-In that asks for it) and stays logged in: after 2 s of
    silence a TEST UNIT READY works on the same session, and the engine logged pings but
    no timeout.
  * An initiator that stops servicing its socket is cut off once a ping has gone
    unanswered for 400 ms; libiscsi then logs in again by itself and carries on.

  nop_in_libiscsi.py castor-engine
"""
import ctypes
import os
import select
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from engine_script import EngineScript  # noqa: E402

engine = sys.argv[1]
iqn = "iqn.2026-11.io.castor:nop"
try:
    lib = ctypes.CDLL("libiscsi.so.7")
except OSError as e:
    sys.exit(f"FAIL: libiscsi.so.7 is missing (scripts/setup.sh installs libiscsi-bin, "
             f"which brings libiscsi7): {e}")
lib.iscsi_create_context.restype = ctypes.c_void_p
lib.iscsi_create_context.argtypes = [ctypes.c_char_p]
lib.iscsi_set_targetname.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.iscsi_set_session_type.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.iscsi_full_connect_sync.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
lib.iscsi_get_fd.argtypes = [ctypes.c_void_p]
lib.iscsi_which_events.argtypes = [ctypes.c_void_p]
lib.iscsi_service.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.iscsi_get_error.restype = ctypes.c_char_p
lib.iscsi_get_error.argtypes = [ctypes.c_void_p]
lib.iscsi_testunitready_sync.restype = ctypes.c_void_p
lib.iscsi_testunitready_sync.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.scsi_free_scsi_task.argtypes = [ctypes.c_void_p]
lib.iscsi_destroy_context.argtypes = [ctypes.c_void_p]
ISCSI_SESSION_NORMAL = 2


def tur(ctx):
    """SCSI status of a TEST UNIT READY (struct scsi_task starts with int status); -1 if
    the command could not be sent."""
    t = lib.iscsi_testunitready_sync(ctx, 0)
    if not t:
        return -1
    status = ctypes.c_int.from_address(t).value
    lib.scsi_free_scsi_task(t)
    return status


def tur_until_good(ctx):
    # The first commands of a session may see a unit attention (power on, nexus loss).
    for _ in range(4):
        if tur(ctx) == 0:
            return True
    return False


def service_for(ctx, seconds):
    """Runs libiscsi's event loop as an idle application would."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        p = select.poll()
        p.register(lib.iscsi_get_fd(ctx), lib.iscsi_which_events(ctx))
        ev = p.poll(50)
        if lib.iscsi_service(ctx, ev[0][1] if ev else 0) < 0:
            return False
    return True


t = EngineScript(engine, ["--bdev", "malloc:///lun0?size_mb=16", "--iscsi-listen", "127.0.0.1:0",
                          "--iscsi-export", iqn + "=lun0", "--iscsi-nop-in-ms", "200"], prefix="castor-nopin.")
check, log, metric = t.check, t.log, t.metric
with t:
    port = t.info["iscsi_port"]

    ctx = lib.iscsi_create_context(b"iqn.2026-11.test:nop-in")
    lib.iscsi_set_targetname(ctx, iqn.encode())
    lib.iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL)
    rc = lib.iscsi_full_connect_sync(ctx, f"127.0.0.1:{port}".encode(), 0)
    check(rc == 0, "libiscsi logs in" + ("" if rc == 0 else ": " + lib.iscsi_get_error(ctx).decode()))
    check(tur_until_good(ctx), "TEST UNIT READY is GOOD")

    # Idle but alive.
    check(service_for(ctx, 2.0), "libiscsi's event loop runs 2 s without an error")
    pings = log().count("NOP-In ping")
    check(pings >= 2, f"the engine pinged the silent initiator ({pings} pings)")
    check("did not answer" not in log() and "no answer" not in log(),
          "libiscsi answered every ping: no timeout")
    check(tur(ctx) == 0, "the same session still serves TEST UNIT READY")
    check(log().count("iscsi session to") == 1, "no new login was needed")
    check(metric(f'castor_iscsi_sessions{{target="{iqn}"}}') == 1 and
          metric("castor_iscsi_connections") == 1, "the metrics show the one session")
    check((metric("castor_iscsi_nop_in_pings_total") or 0) >= pings and
          metric("castor_iscsi_nop_in_timeouts_total") == 0, "and count the pings, no timeout")

    # Dead: the application stops servicing the socket. (At most 200 ms to the next check,
    # 200 ms to the ping, 400 ms unanswered: well within 5 s.)
    end = time.monotonic() + 5
    while "no answer to a NOP-In ping" not in log() and time.monotonic() < end:
        time.sleep(0.1)
    check("no answer to a NOP-In ping" in log(), "the engine closed the unanswering connection")
    check(tur_until_good(ctx), "libiscsi logs in again by itself and TEST UNIT READY is GOOD")
    check(log().count("iscsi session to") == 2, "that took a second login")
    check(metric("castor_iscsi_nop_in_timeouts_total") == 1, "the metrics count the timeout")
    check(metric('castor_iscsi_logins_total{result="ok"}') == 2, "and two logins")
    lib.iscsi_destroy_context(ctx)
