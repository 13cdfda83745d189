"""Start the board service in a separate process for end-to-end tests."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def env(insecure: bool = True) -> dict:
    """The tests' environment; ``insecure``: WQ_INSECURE=1, the explicit
    consent both sides need to run without a key (tests with a key pass one)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    if insecure:
        e["WQ_INSECURE"] = "1"
    else:
        e.pop("WQ_INSECURE", None)
    return e


def stop(proc, grace=10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def service(model_dir, tmp_path, backend="reference", start_timeout=60.0, extra=()):
    port_file = Path(tmp_path) / f"port-{backend}-{time.monotonic_ns()}"
    log = open(Path(tmp_path) / f"service-{backend}.log", "wb")
    proc = subprocess.Popen([PY, "-m", "zybo_z7.service", "--model", str(model_dir),
                             "--backend", backend, "--host", "127.0.0.1", "--port", "0",
                             "--port-file", str(port_file), *extra],
                            cwd=ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout
        while not port_file.exists():
            if proc.poll() is not None:
                log.flush()
                raise RuntimeError("service exited: " + Path(log.name).read_text()[-2000:])
            if time.monotonic() > deadline:
                raise TimeoutError("service did not start")
            time.sleep(0.05)
        yield int(port_file.read_text()), proc
    finally:
        stop(proc)
        log.close()


def run_host(args, timeout=60.0, wrapper=None, insecure=True):
    cmd = [PY, "-m", "host_stm32mp1", *args] if wrapper is None else [PY, "-c", wrapper, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env(insecure), capture_output=True, text=True,
                          timeout=timeout)
