"""The STM32MP1 host as armhf (32-bit ARM) under qemu-arm user mode.

    .venv/bin/python tests/armhf/run.py [--work build/armhf]     (make test-armhf)

Builds a Debian armhf root with python3 and python3-numpy (deploy/armhf/root.sh,
cached under build/armhf/), builds the host wheel, installs it with the root's
own pip into a venv that sees only Debian's packages, and runs the armhf host
against the native board service (reference backend, HMAC key) on loopback:
classify (compared map for map with the same run on amd64), status and watch
through /etc/waferq/host.toml's reader, the struct sizes of the wire and STDF
formats, an STDF file over 2 GiB (sparse) and the memory a classify run uses.
Prints PASS/FAIL per check, writes build/armhf/report.json and ends with
`N passed, M failed` (exit 1 if any failed, 2 if qemu-arm is missing).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from deploy import host_wheel  # noqa: E402
from test_host_formats import stdf_for  # noqa: E402  (the STDF writer the format tests use)

NATIVE = sys.executable
# Struct layouts the host depends on; the armhf side must compute the same sizes.
STRUCTS = """
import json, struct, sys
import protocol.wire as W, protocol.auth as A, numpy as np
out = {f"{m.__name__}.{k}": v.size for m in (W, A) for k, v in vars(m).items()
       if isinstance(v, struct.Struct)}
out.update(pointer=struct.calcsize("P"), long=struct.calcsize("l"), size_t=struct.calcsize("N"),
           intp=np.dtype(np.intp).itemsize, maxsize_bits=sys.maxsize.bit_length() + 1)
print(json.dumps(out))
"""
CONTEXT = """
import json, platform, sys, numpy, host_stm32mp1, waferq_host_config
bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'brevitas', 'quant', 'zybo_z7', 'hls')]
print(json.dumps(dict(machine=platform.machine(), python=platform.python_version(),
    numpy=numpy.__version__, numpy_file=numpy.__file__, host_file=host_stm32mp1.__file__,
    config_file=waferq_host_config.__file__, bad=bad)))
"""
# Peak resident size of a classify run, read inside the guest (getrusage counts qemu too).
MEASURE = """
import resource, runpy, sys
sys.argv = ['host_stm32mp1'] + sys.argv[1:]
try:
    runpy.run_module('host_stm32mp1', run_name='__main__', alter_sys=True)
except SystemExit as e:
    rc = e.code
print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(rc)
"""


class Check(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Check(msg)


class Armhf:
    def __init__(self, work: Path):
        self.work = work.resolve()
        self.qemu = shutil.which("qemu-arm")
        self.root = self.work / "root"
        self.venv = self.root / "opt" / "waferq"
        self.tmp = self.work / "run"
        self.figures: dict = {}

    def env(self, extra=None) -> dict:
        # Nothing of this machine's Python may leak in: no PYTHONPATH, no user site.
        e = {"PATH": "/usr/bin:/bin", "HOME": str(self.tmp), "LANG": "C.UTF-8",
             "PYTHONNOUSERSITE": "1", "QEMU_LD_PREFIX": str(self.root)}
        e.update(extra or {})
        return e

    def py(self, args, python=None, timeout=600, extra_env=None, **kw):
        python = python or self.venv / "bin" / "python"
        return subprocess.run([self.qemu, "-L", str(self.root), str(python), *map(str, args)],
                              cwd=self.tmp, env=self.env(extra_env), capture_output=True,
                              text=True, timeout=timeout, **kw)

    def popen(self, args, extra_env=None, **kw):
        return subprocess.Popen([self.qemu, "-L", str(self.root), str(self.venv / "bin" / "python"),
                                 *map(str, args)], cwd=self.tmp, env=self.env(extra_env), **kw)


def native(args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([NATIVE, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def ok(proc, what):
    need(proc.returncode == 0, f"{what} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}")
    return proc


# ---------------------------------------------------------------------------- setup

def build_root(a: Armhf):
    ok(subprocess.run(["sh", str(REPO / "deploy/armhf/root.sh"), str(a.work)],
                      capture_output=True, text=True, timeout=900), "deploy/armhf/root.sh")
    need((a.root / "usr/bin/python3.11").exists(), "no python3.11 in the armhf root")


def install_wheel(a: Armhf):
    wheel = host_wheel.build(a.work / "dist")
    if a.venv.exists():
        shutil.rmtree(a.venv)
    if a.tmp.exists():
        shutil.rmtree(a.tmp)
    a.tmp.mkdir(parents=True)
    sys_py = a.root / "usr/bin/python3.11"
    ok(a.py(["-m", "venv", "--system-site-packages", "--without-pip", a.venv], python=sys_py),
       "python3 -m venv (armhf)")
    # The root's own pip, offline: it must find every requirement (numpy) among Debian's packages.
    proc = ok(a.py(["-m", "pip", "install", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
                    wheel]), "pip install (armhf)")
    need("Successfully installed waferq-host" in proc.stdout, proc.stdout[-800:])
    a.figures["wheel"] = wheel.name
    a.figures["wheel_bytes"] = wheel.stat().st_size


def check_context(a: Armhf):
    info = json.loads(ok(a.py(["-c", CONTEXT]), "import check").stdout)
    need(info["machine"].startswith("armv7"), f"machine is {info['machine']}, not armv7")
    need(info["host_file"].startswith(str(a.venv)), f"host imported from {info['host_file']}")
    need(info["numpy_file"].startswith(str(a.root / "usr/lib/python3/dist-packages")),
         f"numpy from {info['numpy_file']}, not Debian's python3-numpy")
    need(not info["bad"], f"the host imported {info['bad']}")
    a.figures.update(python=info["python"], numpy=info["numpy"], machine=info["machine"])


def check_structs(a: Armhf):
    arm = json.loads(ok(a.py(["-c", STRUCTS]), "struct sizes (armhf)").stdout)
    amd = json.loads(ok(native(["-c", STRUCTS]), "struct sizes (amd64)").stdout)
    words = ("pointer", "long", "size_t", "intp", "maxsize_bits")
    need(len(arm) > len(words) + 3, f"too few structs found: {sorted(arm)}")
    diff = {k: (amd[k], arm[k]) for k in amd if k not in words and amd[k] != arm.get(k)}
    need(not diff, f"wire struct sizes differ amd64 vs armhf: {diff}")
    need(all(arm[k] * 8 == 32 for k in ("pointer", "long", "size_t", "intp")),
         f"armhf machine words are not 32 bits: { {k: arm[k] for k in words} }")
    a.figures["word_sizes"] = {"amd64": {k: amd[k] for k in words}, "armhf": {k: arm[k] for k in words}}


def write_inputs(a: Armhf):
    rng = np.random.default_rng(7)
    d = a.tmp / "in"
    d.mkdir()
    np.savez(d / "maps.npz", x=rng.integers(0, 3, (40, 30, 30)).astype(np.uint8))
    stdf_maps = [rng.integers(0, 3, (26, 24)).astype(np.uint8) for _ in range(3)]
    (d / "le.stdf").write_bytes(stdf_for(stdf_maps, cpu=2))
    (d / "be.stdf").write_bytes(stdf_for(stdf_maps[:2], cpu=1))
    return [d / "maps.npz", d / "le.stdf", d / "be.stdf"]


def classes(path: Path) -> list:
    recs = json.loads(path.read_text())["results"]
    return [(Path(r["source"]).name, r["index"], r["status"], r.get("class_index")) for r in recs]


def check_classify(a: Armhf, ctx):
    files = write_inputs(a)
    common = ["--board", f"127.0.0.1:{ctx['port']}", "--model", ctx["model"], "--key-file",
              ctx["key"], "--no-progress", "--batch", "16"]
    ok(native(["-m", "host_stm32mp1", "classify", *files, *common, "--out", a.tmp / "amd64.json"]),
       "classify (amd64)")
    proc = ok(a.py(["-c", MEASURE, "classify", *files, *common, "--out", a.tmp / "armhf.json"]),
              "classify (armhf)")
    m = re.search(r"MAXRSS_KB (\d+)", proc.stderr)
    need(m, "no MAXRSS line")
    a.figures["classify_maxrss_mib_incl_qemu"] = round(int(m.group(1)) / 1024, 1)
    amd, arm = classes(a.tmp / "amd64.json"), classes(a.tmp / "armhf.json")
    need(len(arm) == 40 + 3 + 2, f"{len(arm)} results, expected 45")
    need(all(r[2] == "ok" for r in arm), f"errors on armhf: {[r for r in arm if r[2] != 'ok'][:3]}")
    need(arm == amd, "armhf classes differ from amd64: "
         f"{[(x, y) for x, y in zip(amd, arm) if x != y][:5]}")
    a.figures["classified_maps"] = len(arm)


def write_config(a: Armhf, ctx, inbox: Path) -> Path:
    cfg = a.tmp / "host.toml"
    cfg.write_text(f'boards = ["127.0.0.1:{ctx["port"]}"]\ninbox = "{inbox}"\nmodel = "{ctx["model"]}"\n'
                   f'db = "sqlite:///{a.tmp / "results.sqlite"}"\nkey_file = "{ctx["key"]}"\n'
                   'poll_interval = 0.2\nbatch = 32\nverbose = true\n')
    return cfg


def check_status(a: Armhf, ctx):
    inbox = a.tmp / "inbox"
    inbox.mkdir(exist_ok=True)
    cfg = write_config(a, ctx, inbox)
    out = ok(a.py(["-m", "waferq_host_config", "--config", cfg, "status"]), "status (armhf)").stdout
    need("topology matches" in out and "weights loaded" in out, f"status says: {out}")


def check_watch(a: Armhf, ctx):
    inbox = a.tmp / "inbox"
    cfg = write_config(a, ctx, inbox)
    err = open(a.tmp / "watch.stderr", "w+")
    proc = a.popen(["-m", "waferq_host_config", "--config", cfg, "watch"],
                   extra_env={"JOURNAL_STREAM": "8:1234"}, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        maps = np.random.default_rng(3).integers(0, 3, (12, 30, 30)).astype(np.uint8)
        # The tester's way: write under a skipped name, then rename into place.
        with open(inbox / "lot1.npy.part", "wb") as f:
            np.save(f, maps)
        os.replace(inbox / "lot1.npy.part", inbox / "lot1.npy")
        # Wait for watch's own report of the file (printed after the move and the store
        # write), read by a thread; the deadline is a hang guard only.
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        out = []
        while not any(ln.startswith("lot1.npy:") for ln in out):
            try:
                ln = lines.get(timeout=300)
            except queue.Empty:
                raise Check("watch did not report lot1.npy") from None
            if ln is None:
                raise Check(f"watch exited {proc.wait()}: {''.join(out)}")
            out.append(ln)
        proc.send_signal(signal.SIGTERM)       # what systemctl stop sends
        proc.wait(timeout=120)
        out = "".join(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    need(proc.returncode == 0, f"watch exited {proc.returncode} on SIGTERM")
    need("lot1.npy: 12 maps, 0 errors -> done/" in out, f"watch printed: {out}")
    err.seek(0)
    lines_err = [ln for ln in err.read().splitlines() if ln.strip()]
    bare = [ln for ln in lines_err if not re.match(r"<[0-7]>", ln)]
    need(not bare, f"stderr lines without a journald priority: {bare[:3]}")
    # The board pool logs its connection at INFO: journald level 6.
    need(any(ln.startswith("<6>waferq.") for ln in lines_err), f"no <6> log line: {lines_err[:3]}")
    need((inbox / "done" / "lot1.npy").exists(), "lot1.npy not moved to done/")
    with sqlite3.connect(a.tmp / "results.sqlite") as db:
        n = db.execute("SELECT count(*) FROM wq_results r JOIN wq_images i ON r.seq = i.seq "
                       "WHERE r.status = 'ok'").fetchone()[0]
    need(n == 12, f"{n} ok results in the store, expected 12")


BIG = """
import os, sys, time
from host_stm32mp1 import readers
p = sys.argv[1]
st = os.stat(p)
with open(p, 'rb') as f:            # 64-bit file offsets (LFS) on a 32-bit build
    f.seek(st.st_size - 8)
    tail = f.read()
print('SIZE', st.st_size, len(tail))
t = time.monotonic()
for r in readers.read_file(p):      # the classify path: fstat refuses it before any read or hash
    print('RESULT', type(r).__name__, getattr(r, 'reason', '')[:200].replace(chr(10), ' '))
print('SECONDS', round(time.monotonic() - t, 1))
"""


def check_big_stdf(a: Armhf, ctx):
    """An STDF file over 2 GiB on a 32-bit host: 64-bit offsets work, and the
    reader refuses it by its size (fstat) before reading or hashing a byte."""
    big = a.tmp / "big.stdf"
    head = stdf_for([np.ones((4, 4), np.uint8)], cpu=2)
    size = (2 << 30) + (1 << 20)     # 2 GiB + 1 MiB, a hole after the records
    with open(big, "wb") as f:
        f.write(head)
        f.truncate(size)
    try:
        need(os.stat(big).st_blocks * 512 < (64 << 20), "the 2 GiB file is not sparse here")
        out = ok(a.py(["-c", BIG, big]), "STDF reader on a 2 GiB file (armhf)").stdout
    finally:
        big.unlink()
    need(f"SIZE {size} 8" in out, f"size or offset wrong on 32 bits: {out}")
    need("RESULT Failure" in out and "MiB limit for one map file" in out,
         f"the 2 GiB file was not refused by its size before reading: {out}")
    a.figures["big_stdf_error_armhf"] = re.search(r"^RESULT Failure (.*)$", out, re.M).group(1)
    a.figures["big_stdf_seconds_armhf"] = float(re.search(r"SECONDS (\S+)", out).group(1))


# ---------------------------------------------------------------------------- main

def start_service(a: Armhf) -> tuple[dict, subprocess.Popen]:
    model = a.tmp / "model"
    ok(native(["-c", "import sys; from contract.intmodel import random_model; from contract.spec import CNNSpec;"
               f"random_model(CNNSpec.uniform(4, 4), seed=1).save({str(model)!r})"]), "model")
    key = a.tmp / "wire.key"
    key.write_text("1:" + os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    port_file = a.tmp / "port"
    log = open(a.tmp / "service.log", "wb")
    proc = subprocess.Popen([NATIVE, "-m", "zybo_z7.service", "--model", model, "--backend", "reference",
                             "--host", "127.0.0.1", "--port", "0", "--port-file", port_file,
                             "--key-file", key], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        need(proc.poll() is None, "service exited: " + Path(log.name).read_text()[-800:])
        need(time.monotonic() < deadline, "service did not start")
        time.sleep(0.05)
    return dict(port=int(port_file.read_text()), model=str(model), key=str(key)), proc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "build" / "armhf"))
    args = ap.parse_args(argv)
    a = Armhf(Path(args.work))
    if a.qemu is None:
        print("test-armhf: qemu-arm is not installed (Debian package qemu-user).", file=sys.stderr)
        return 2
    # One run at a time per work folder: a second waits here instead of deleting the first's venv.
    a.work.mkdir(parents=True, exist_ok=True)
    lock = open(a.work / ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    passed, failed = 0, 0
    t_start = time.monotonic()

    def run(name, fn, *fa):
        nonlocal passed, failed
        t0 = time.monotonic()
        try:
            fn(a, *fa)
        except Check as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
            return False
        except Exception:
            failed += 1
            print(f"FAIL {name}: {traceback.format_exc()[-1500:]}", flush=True)
            return False
        passed += 1
        print(f"PASS {name} ({time.monotonic() - t0:.1f} s)", flush=True)
        return True

    later = ["context", "structs", "classify", "status", "watch", "big-stdf"]
    svc = None
    if run("armhf root (python3, python3-numpy from Debian)", build_root) and \
            run("wheel installs with the root's pip, numpy from Debian", install_wheel):
        try:
            ctx, svc = start_service(a)
            run("armv7, host from the wheel, no torch", check_context)
            run("struct sizes: wire formats as on amd64, 32-bit words", check_structs)
            run("classify a batch (NPZ, STDF LE/BE, HMAC): same classes as amd64", check_classify, ctx)
            run("status from host.toml", check_status, ctx)
            run("watch from host.toml: classified, moved, stored, journald levels, SIGTERM", check_watch, ctx)
            run("STDF over 2 GiB (sparse): 64-bit offsets; refused by its size before any read",
                check_big_stdf, ctx)
        except Check as e:
            print(f"FAIL board service: {e}")
            failed += len(later)
        finally:
            if svc is not None:
                svc.terminate()
                svc.wait(30)
    else:
        failed += len(later)
    a.figures["seconds"] = round(time.monotonic() - t_start, 1)
    a.work.mkdir(parents=True, exist_ok=True)
    (a.work / "report.json").write_text(json.dumps(a.figures, indent=1))
    print(json.dumps(a.figures))
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
