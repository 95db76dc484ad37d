"""What the Python test scripts that drive a real castor-engine share: start it on loopback
with free ports (found through its ready file), read its log and /metrics, record checks,
and stop it by PID with a verdict line and exit status.

    from engine_script import EngineScript
    with EngineScript(engine_path, ["--bdev", "malloc:///m0?size_mb=16", ...]) as t:
        t.check(t.info["nbd_port"] > 0, "the engine listens")
    # leaving the block prints RESULT and exits 0 or 1
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


class EngineScript:
    def __init__(self, engine, args, prefix="castor-test."):
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.log_path = os.path.join(self.work, "engine.log")
        ready = os.path.join(self.work, "ready")
        self.failures = []
        self.proc = subprocess.Popen(
            [engine, "--cores", "0", "--grpc-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--state-dir", os.path.join(self.work, "state"), "--log-level", "debug",
             "--ready-file", ready] + list(args),
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        for _ in range(150):
            if os.path.exists(ready) and os.path.getsize(ready) > 0:
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        try:
            self.info = json.load(open(ready))
        except (OSError, ValueError):
            self.stop()
            print(self.log())
            sys.exit("the engine did not become ready")

    def check(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what, flush=True)
        if not ok:
            self.failures.append(what)

    def log(self):
        return open(self.log_path).read()

    def metric(self, series):
        """One series' value from the engine's /metrics (`name` or `name{labels}` exactly as
        exposed), or None."""
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.info['metrics_port']}/metrics",
                                      timeout=10).read().decode()
        for line in body.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.check(self.proc.poll() is None, "the engine is still running")
        self.stop()
        if self.failures or exc_type is not None:
            print("--- engine log (tail)")
            print("\n".join(self.log().splitlines()[-30:]))
        shutil.rmtree(self.work, ignore_errors=True)
        if exc_type is not None:
            return False  # the exception propagates: the script fails
        print(f"RESULT: {'FAIL' if self.failures else 'PASS'} ({len(self.failures)} failure(s))")
        sys.exit(1 if self.failures else 0)
