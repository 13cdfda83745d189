"""Accuracy of a finished ``quant.train`` run by the wafer's grid size.

    python -m quant.grid_report --run DIR [--edges 30,48,72,96] [--out DIR]

A product's wafer map has one grid, and the model sees every grid at one
input size: a 26-row map is grown about twice, a 200-row map shrunk four
times, each input pixel then holding the largest die state of 16 dies
(``contract.preprocess``). So one accuracy over the held-out rows says little
about one product. This report splits the held-out rows by the long side of
their grid (in dies, the side the map is padded to before the resize) and
gives each band its count, accuracy, balanced accuracy and per-class errors,
the QAT model at the run's views, as ``quant.train`` scored it.

Writes ``grid_sizes.json`` and ``grid_sizes.png`` (accuracy per band, with
the number of maps) beside the run's report, or into ``--out``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from quant import metrics
from quant.ensemble_report import pkl_run_config

DEFAULT_EDGES = (30, 48, 72, 96)


def _config(run: Path) -> dict:
    return pkl_run_config(run, "the grid report (only the file keeps each map's grid)")


def held_out(cfg: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(model inputs, labels, long side of each raw grid) of the run's held-out rows."""
    from quant.datasets import wm811k
    from quant.traindata import preprocess, split_seed

    # The raw grids, split as quant.train split them, then resized by the
    # same function its loader uses: one read, and only the held-out rows.
    raw = wm811k.load(cfg["data"], n_classes=8 if cfg.get("eight_classes") else 9, limit=cfg.get("limit"),
                      seed=split_seed(cfg)).test
    sides = np.array([max(m.shape) for m in raw.maps], dtype=np.int64)
    return preprocess(raw.maps, int(cfg["size"])), raw.labels, sides


def bands(sides: np.ndarray, edges) -> tuple[np.ndarray, list[str]]:
    """Band index of each side and the band names: edges 30,48 give <30, 30-47, >=48."""
    edges = sorted(int(e) for e in edges)
    names = [f"<{edges[0]}"] + [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])] + [f">={edges[-1]}"]
    return np.searchsorted(edges, sides, side="right"), names


def report(run: Path, edges=DEFAULT_EDGES) -> dict:
    from quant.fit import predict_logits
    from quant.train import load_checkpoint

    cfg = _config(run)
    x, y, sides = held_out(cfg)
    classes = tuple(cfg["classes"])
    q = load_checkpoint(run / "checkpoint.pt")
    pred = predict_logits(q, x, n_views=int(cfg.get("views") or 1)).argmax(1)
    idx, names = bands(sides, edges)
    out = []
    for b, name in enumerate(names):
        sel = idx == b
        if not sel.any():
            out.append({"band": name, "n": 0})
            continue
        s = metrics.summary(y[sel], pred[sel], classes)
        cm = s["confusion"]
        wrong = {c: int(sum(cm[k]) - cm[k][k]) for k, c in enumerate(classes)}
        out.append({"band": name, "n": int(sel.sum()), "accuracy": s["accuracy"],
                    "balanced_accuracy": s["balanced_accuracy"],
                    "per_class_n": {c: v["support"] for c, v in s["per_class"].items() if v["support"]},
                    "per_class_wrong": {c: v for c, v in wrong.items() if v}})
    total = metrics.summary(y, pred, classes)
    return {"run": str(run), "size": int(cfg["size"]), "views": int(cfg.get("views") or 1),
            "edges": sorted(int(e) for e in edges), "bands": out,
            "all": {"n": len(y), "accuracy": total["accuracy"], "balanced_accuracy": total["balanced_accuracy"]}}


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [b for b in res["bands"] if b["n"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar([b["band"] for b in rows], [100 * b["accuracy"] for b in rows], color="#4c72b0")
    for bar, b in zip(bars, rows):
        ax.annotate(f"{b['n']} maps", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.axhline(100 * res["all"]["accuracy"], color="gray", ls="--", lw=1, label="all held-out maps")
    ax.set_ylim(min(50.0, min(100 * b["accuracy"] for b in rows) - 5), 101)
    ax.set_xlabel(f"grid long side (dies); model input {res['size']}x{res['size']}")
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Held-out accuracy of a quant.train run by grid size.")
    ap.add_argument("--run", type=Path, required=True, help="a quant.train output folder")
    ap.add_argument("--edges", default=",".join(map(str, DEFAULT_EDGES)),
                    help="band edges on the grid's long side, in dies (default %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the JSON and the plot (default: the run's)")
    args = ap.parse_args(argv)
    try:
        edges = [int(e) for e in args.edges.split(",") if e.strip()]
    except ValueError:
        raise SystemExit(f"--edges takes whole numbers of dies separated by commas, got {args.edges!r}") from None
    if not edges or min(edges) < 1 or len(set(edges)) != len(edges):
        raise SystemExit(f"--edges needs distinct positive numbers of dies, got {args.edges!r}")
    res = report(args.run, edges)
    print(f"{res['run']}: held-out maps by grid long side (model input {res['size']}x{res['size']}, "
          f"{res['views']} view(s) a map)")
    print(f"{'dies':>9} {'maps':>5} {'accuracy':>9} {'balanced':>9}  wrong by class")
    for b in res["bands"]:
        if not b["n"]:
            print(f"{b['band']:>9} {0:5d}")
            continue
        wrong = ", ".join(f"{c} {k}/{b['per_class_n'][c]}" for c, k in b["per_class_wrong"].items()) or "-"
        print(f"{b['band']:>9} {b['n']:5d} {100 * b['accuracy']:8.2f}% {100 * b['balanced_accuracy']:8.2f}%  {wrong}")
    a = res["all"]
    print(f"{'all':>9} {a['n']:5d} {100 * a['accuracy']:8.2f}% {100 * a['balanced_accuracy']:8.2f}%")
    out = args.out or args.run
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid_sizes.json").write_text(json.dumps(res, indent=1))
    plot(res, out / "grid_sizes.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
