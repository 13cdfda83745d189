"""Peak memory of loading an LSWMD-format file: pandas' reader against the
streaming cache builder (``quant.datasets.stream``).

    python -m bench.wm811k_stream --rows 25000,100000 --out build/bench_stream
    python -m bench.wm811k_stream --pkl LSWMD.pkl --out DIR        # the real 2 GB file

Without ``--pkl`` it writes a generated file with the LSWMD structure (grid
sizes 25..212 x 26..84, a fifth labelled as in WM-811K), then loads it in two
fresh processes: ``wm811k.read_frame`` (the whole frame, every map) and
``stream.build_cache`` (maps go to the memory-mapped cache as they are
unpickled). Prints a table and writes ``wm811k_stream.json``: each file's
size, each process's peak RSS (VmHWM) and seconds, and with two or more
sizes the growth a row (first to last file) and where it would put the
original's 811k rows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from contract.spec import WAFER_CLASSES


def write_file(path: Path, rows: int, seed: int = 0) -> None:
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("waferMap", "dieSize", "lotName", "waferIndex", "trianTestLabel", "failureType")}
    for i in range(rows):
        h = int(rng.integers(25, 100)) if rng.random() < 0.95 else int(rng.integers(100, 213))
        w = int(np.clip(h * rng.uniform(0.4, 1.2), 26, 84))
        yy, xx = np.mgrid[:h, :w] + 0.5
        m = (((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 <= 1).astype(np.uint8)
        m[(m == 1) & (rng.random((h, w)) < 0.05)] = 2
        cols["waferMap"].append(m)
        cols["dieSize"].append(float(m.sum()))
        cols["lotName"].append(f"lot{i // 25}")
        cols["waferIndex"].append(float(i % 25 + 1))
        labelled = rng.random() < 0.21
        cols["trianTestLabel"].append(np.array([["Training" if rng.random() < 0.32 else "Test"]])
                                      if labelled else np.zeros((0, 0)))
        cols["failureType"].append(np.array([[WAFER_CLASSES[int(rng.integers(0, 9))]]])
                                   if labelled else np.zeros((0, 0)))
    pd.DataFrame(cols).to_pickle(path, protocol=4)


_CHILD = {
    "read_frame": "from quant.datasets import wm811k, stream; df = wm811k.read_frame({pkl!r}); "
                  "print(len(df), stream.peak_rss_mib())",
    "stream": "from quant.datasets import stream; m = stream.build_cache({pkl!r}, {out!r}, (48,)); "
              "print(m['rows'], stream.peak_rss_mib())",
}


def measure(kind: str, pkl: Path, out: Path) -> dict:
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", _CHILD[kind].format(pkl=str(pkl), out=str(out / "cache"))],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{kind}: {r.stderr.strip().splitlines()[-1]}")
    rows, rss = r.stdout.split()[-2:]
    return {"rows": int(rows), "peak_rss_mib": float(rss), "seconds": time.time() - t0}


WM811K_ROWS = 811_457


def generated(folder: Path, rows: int) -> Path:
    """A generated LSWMD-structure file of ``rows`` rows in ``folder`` (written once)."""
    pkl = folder / f"lswmd_{rows}.pkl"
    if not pkl.exists():
        print(f"writing {pkl} ({rows} rows)")
        write_file(pkl, rows)
    return pkl


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pkl", type=Path, default=None, help="an LSWMD-format file (default: generate one)")
    ap.add_argument("--rows", default="25000,100000",
                    help="rows of the generated files, comma separated: two or more give the growth a row")
    ap.add_argument("--out", type=Path, default=Path("build/bench_stream"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.pkl is not None:
        files = [args.pkl]
    else:
        files = [generated(args.out, int(r)) for r in str(args.rows).split(",") if r.strip()]
    runs = []
    for pkl in files:
        res = {"file": str(pkl), "file_mib": pkl.stat().st_size / 2 ** 20}
        for kind in ("read_frame", "stream"):
            res[kind] = measure(kind, pkl, args.out)
        runs.append(res)
    print(f"{'rows':>8s} {'file MiB':>9s} {'loader':12s} {'peak RSS MiB':>13s} {'seconds':>8s}")
    for res in runs:
        for kind in ("read_frame", "stream"):
            print(f"{res['stream']['rows']:8d} {res['file_mib']:9.0f} {kind:12s} "
                  f"{res[kind]['peak_rss_mib']:13.0f} {res[kind]['seconds']:8.1f}")
    out = {"runs": runs}
    if len(runs) >= 2:
        # Peak memory against rows: what each further row costs, and where
        # the original's 811k rows would land at that rate.
        a, b = runs[0], runs[-1]
        d_rows = b["stream"]["rows"] - a["stream"]["rows"]
        out["growth"] = {}
        for kind in ("read_frame", "stream"):
            per_row = (b[kind]["peak_rss_mib"] - a[kind]["peak_rss_mib"]) * 2 ** 20 / d_rows
            at = b[kind]["peak_rss_mib"] + per_row * (WM811K_ROWS - b["stream"]["rows"]) / 2 ** 20
            out["growth"][kind] = {"bytes_per_row": per_row, "mib_at_811k_rows": at}
            print(f"{kind:12s} {per_row:8.0f} bytes a row; about {at:.0f} MiB at {WM811K_ROWS:,} rows")
    (args.out / "wm811k_stream.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
