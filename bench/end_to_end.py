"""CPU time per map on the path a map takes: host -> TCP -> service -> char device -> core.

    python -m bench.end_to_end [--model DIR] [--out build/bench] [--sizes 1,16,64,256]
                               [--maps N] [--repeats 5] [--no-csim]

Rows, for each batch size (maps in one wire INFER_BATCH):

- ``tcp+chardev/cached``, ``tcp+chardev/reference`` and ``tcp+chardev/csim``:
  a host process (``BoardClient.infer_batch``) sends batches over loopback
  TCP to a board service process (``--backend chardev``), whose device is
  the driver's stand-in (``bench.chardev_standin``) in this process, in front
  of a core: ``cached`` answers a batch size it has seen from a cache (the
  core at no wall time; its results are not this batch's, the CPU work of
  host and service is the same), ``reference`` the reference core, ``csim``
  the C simulation. Then the host process classifies the same maps through
  ``host_stm32mp1.engine.send`` (what ``classify`` does after reading), its
  CPU the ``host_engine`` column;
- ``service alone``: the service's hot path for one frame (decode the
  INFER_BATCH payload, run the batch on the board, encode and frame RESULTS)
  in a process of its own, on the cached core, so nearly all of its CPU time
  is the service's.

What is counted (``COUNTED``): user + system time from each process's own
accounting (``resource.getrusage(RUSAGE_SELF)``, all its threads, taken
inside the process around the timed batches), never wall clock. The driver
stand-in and the core run in this (the bench) process and are not counted:
they stand for the hardware. Each row runs ``WARMUP_BATCHES`` untimed
batches, then ``--repeats`` timed repeats of ``--maps`` maps (default 8
batches, 40 in all at batch 256; the slow C-sim 2 batches, 3 repeats); the
figures are medians over the repeats, with [min, max] as the spread. The
repeats of a row follow one another within seconds, so they share the
machine's load of the moment: on a shared machine CPU time per map grows
with other work (caches, SMT siblings, wake-ups), by up to 2x here. Each
row records the load average; compare runs, or rerun, rather than rows of
one run taken under different load.

The service's idle CPU rate (its accept loop's wake-ups) is measured before
its rows and subtracted over each repeat's wall time in
``service_us_per_map_less_idle``: the reference core and the C-sim stretch a
row's wall time by orders of magnitude over the hardware's. They also leave
the service waiting between batches, which costs it cache and wake-up time
that the cached row does not pay. The goal (``GOAL_US`` at the largest batch)
is judged on the cached row, host + service with nothing subtracted; the JSON
has every row's ratio. maps/s is wall clock of the host's timed loop and says
little on a shared machine. The board budget scales the CPU time per map by a
stated factor per board CPU (``end_to_end_report.BOARD_FACTORS``). Writes ``end_to_end.json``
into --out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.end_to_end_report import (GOAL_PATH, GOAL_US, SOURCES, TARGET_MAPS_S, budget,
                                     bytes_per_map, host_mhz, print_table, progress, row)

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1, 16, 64, 256)
REPEATS = 5       # timed repeats a row: 8 batches each, 40 at batch 256
IDLE_S = 2.0      # seconds of the idle service measured before its rows

COUNTED = ("user + system CPU seconds from getrusage(RUSAGE_SELF) inside the host process "
           "(BoardClient.infer_batch loop) and inside the board service process (all its "
           "threads: TCP, decode, pack, the stand-in's system calls, encode); not the bench "
           "process, where the driver stand-in and the core (cached answers, reference "
           "model, C-sim: the hardware's stand-ins) run")


def make_model(folder: Path) -> Path:
    from contract.intmodel import random_model
    from contract.spec import CNNSpec

    random_model(CNNSpec.uniform(4, 4), 3).save(folder)
    return folder


# --- the bench process -------------------------------------------------------

def _child(role: str, *args, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "bench.end_to_end", "--role", role, *map(str, args)],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, **popen)


def _line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        raise RuntimeError(f"bench child {proc.args[4]} exited with {proc.returncode}")
    return line.strip()


def _ask(proc, text: str) -> str:
    proc.stdin.write(text + "\n")
    proc.stdin.flush()
    return _line(proc)


def run_tcp(core_name: str, core, model_dir: Path, sizes, maps_for, repeats, bar) -> list[dict]:
    from bench.chardev_standin import SocketDriverStandIn

    sock_dir = tempfile.mkdtemp(prefix="wqe2e")
    dev = SocketDriverStandIn(Path(sock_dir) / "waferq0", core)
    svc = _child("service", "--model", model_dir, "--device", dev.path)
    rows = []
    try:
        port = int(_line(svc))
        # What the service spends doing nothing (its accept loop's polls): a
        # slow stand-in core stretches a row's wall time, and this with it.
        a = json.loads(_ask(svc, "cpu"))
        time.sleep(IDLE_S)
        z = json.loads(_ask(svc, "cpu"))
        idle_us_s = 1e6 * (z[0] - a[0] + z[1] - a[1]) / IDLE_S
        for b in sizes:
            n = maps_for(b)
            host = _child("host", "--model", model_dir, "--port", port, "--batch", b, "--maps", n)
            hosts, services = [], []
            try:
                if _line(host) != "ready":
                    raise RuntimeError("host child did not get ready")
                for _ in range(repeats):
                    s0 = json.loads(_ask(svc, "cpu"))
                    hosts.append(json.loads(_ask(host, "go")))
                    s1 = json.loads(_ask(svc, "cpu"))
                    services.append(dict(user_s=s1[0] - s0[0], sys_s=s1[1] - s0[1]))
                engine_s = json.loads(_ask(host, "engine"))["engine_s"]
            finally:
                host.stdin.close()
                host.wait(60)
            rows.append(row(f"tcp+chardev/{core_name}", b, n, hosts, services, idle_us_s, engine_s))
            rows[-1]["loadavg_1min"] = round(os.getloadavg()[0], 2)   # other work on the machine
            bar.update(1)
    finally:
        svc.stdin.close()
        svc.wait(60)
        dev.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
    return rows


def run_alone(model_dir: Path, sizes, maps_for, repeats, bar) -> list[dict]:
    rows = []
    for b in sizes:
        n = maps_for(b)
        proc = _child("alone", "--model", model_dir, "--batch", b, "--maps", n, "--repeats", repeats)
        runs = json.loads(_line(proc))
        proc.stdin.close()
        proc.wait(60)
        rows.append(row("service alone", b, n, None, runs))
        rows[-1]["loadavg_1min"] = round(os.getloadavg()[0], 2)
        bar.update(1)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=("service", "host", "alone"), help=argparse.SUPPRESS)
    ap.add_argument("--device", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--maps", type=int, default=0,
                    help="maps a repeat (default: 8 batches, at least 256; the C-sim 2 "
                         "batches, at least 64)")
    ap.add_argument("--repeats", type=int, default=REPEATS,
                    help="timed repeats a row, after the warm-up (default %(default)s; "
                         "the C-sim at most 3)")
    ap.add_argument("--model", type=Path, help="export folder (default: a random W4A4 42x42 model)")
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="batch sizes")
    ap.add_argument("--no-csim", action="store_true", help="skip the C-sim rows (no g++)")
    ap.add_argument("--cores", default="cached,reference,csim",
                    help="the TCP rows' cores, of cached, reference, csim (default: all)")
    ap.add_argument("--no-alone", action="store_true", help="skip the service-alone rows")
    args = ap.parse_args(argv)
    if args.role:
        from bench import end_to_end_roles as roles

        return {"service": roles.role_service, "host": roles.role_host,
                "alone": roles.role_alone}[args.role](args)
    from bench import end_to_end_roles as roles
    sizes = [int(s) for s in args.sizes.split(",")]

    def maps_for(b, slow=False):
        return args.maps or (max(64, 2 * b) if slow else max(256, 8 * b))

    work = Path(tempfile.mkdtemp(prefix="wq_e2e_"))
    try:
        model = args.model or make_model(work / "model")
        from hls.refcore import RefCore
        from zybo_z7.backends import load_spec

        # the cached core first: it answers at once, so its row's CPU needs no
        # idle share subtracted; the goal is judged on it
        cores = [("cached", lambda: roles.CachedCore(model), False),
                 ("reference", lambda: RefCore(load_spec(model)), False)]
        if not args.no_csim and shutil.which("g++"):
            from hls.csim import CSimCore

            cores.append(("csim", lambda: CSimCore.for_model(model, work / "csim"), True))
        cores = [c for c in cores if c[0] in args.cores.split(",")]
        bar = progress(len(sizes) * (len(cores) + 1))
        rows = [] if args.no_alone else run_alone(model, sizes, maps_for, args.repeats, bar)
        for name, make, slow in cores:
            rows += run_tcp(name, _Handle(make()), model, sizes, lambda b: maps_for(b, slow),
                            min(args.repeats, 3) if slow else args.repeats, bar)
        bar.close()
        per_map = {b: bytes_per_map(model, b) for b in (1, max(sizes))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mhz = host_mhz()
    factors = budget(rows, mhz)
    print_table(rows)
    big = max(sizes)
    goal_row = next((r for r in rows if r["batch"] == big and r["path"] == GOAL_PATH), None)
    others = {r["path"]: r.get("total_us_per_map_less_idle") for r in rows
              if r["batch"] == big and r["path"].startswith("tcp+")}
    report = dict(machine=dict(cpu_mhz=mhz, python=sys.version.split()[0],
                               loadavg_at_end=list(os.getloadavg())),
                  sizes=sizes, repeats=args.repeats, warmup_batches=roles.WARMUP_BATCHES,
                  counted=COUNTED, rows=rows, bytes_per_map=per_map,
                  board_factors=factors, factor_sources=SOURCES,
                  goal=dict(us_per_map=GOAL_US, batch=big, path=GOAL_PATH,
                            measured_median=goal_row and goal_row["total_us_per_map"],
                            measured_spread=goal_row and goal_row["total_us_spread"],
                            ratio=goal_row and goal_row["goal_ratio"],
                            met=None if goal_row is None else goal_row["total_us_per_map"] <= GOAL_US,
                            tcp_paths_less_idle=others))
    if goal_row is not None:
        g = report["goal"]
        print(f"goal at batch {big} ({GOAL_PATH}): host + service {g['measured_median']} us/map "
              f"(median of {goal_row['repeats']}, spread {g['measured_spread']}), "
              f"{g['ratio']}x the {GOAL_US} us goal: {'met' if g['met'] else 'NOT met'} "
              f"(load average {goal_row['loadavg_1min']}: CPU time per map grows with "
              "the machine's other load)")
    for key, f in factors.items():
        print(f"board factor {key}: x{f['factor']} ({f['cpu']})")
    for r in rows:
        if "board_us_per_map" in r:
            print(f"batch {r['batch']} {r['path']}: board CPU {r['board_us_per_map']} us/map -> "
                  f"{r['board_maps_per_s_cpu_bound']} maps/s CPU-bound (target {TARGET_MAPS_S})")
    print(f"bytes per map: {report['bytes_per_map']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "end_to_end.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out / 'end_to_end.json'}")
    return 0


class _Handle:
    """A core as the stand-in wants it: transact() and reset()."""

    def __init__(self, core):
        self.core = core

    def transact(self, words):
        if hasattr(self.core, "handle"):
            return self.core.handle(words)
        return self.core.transact(words)

    def reset(self):
        if hasattr(self.core, "reset"):
            self.core.reset()


if __name__ == "__main__":
    raise SystemExit(main())
