"""What an ensemble of finished ``quant.train`` runs would score on their split.

    python -m quant.ensemble_report --runs DIR0 DIR1 DIR2 DIR3 [--out DIR]

Each run's QAT model (``checkpoint.pt``) scores the validation part and the
held-out rows of the split the runs share; an ensemble adds its members'
logits, each member's own eight-view mean as training reports it. A member's
Brevitas logits are its integer logits times 2**logit_scale_log2, so a board
that loads each member's weight blob in turn (one topology, one bitstream)
would reach the same sums. This is a measurement, not a deployment: the host
classifies with one model.

Prints every combination of the members, with accuracy and macro-F1 on
both row sets, and writes ``ensembles.json``. Runs on different rows (data
file, split seed, size, classes) are refused: their figures would not compare.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from quant import metrics

# What picks the rows a run is scored on; runs must agree on all of it.
SAME_ROWS = ("data", "limit", "size", "eight_classes", "views")


def run_config(run: Path) -> dict:
    """The options a finished ``quant.train`` run was trained with; a folder
    without its metrics.json and checkpoint.pt is refused."""
    path = run / "metrics.json"
    if not path.is_file() or not (run / "checkpoint.pt").is_file():
        raise SystemExit(f"{run}: not a finished quant.train run (no metrics.json or checkpoint.pt)")
    return json.loads(path.read_text()).get("config", {})


def pkl_run_config(run: Path, tool: str) -> dict:
    """``run_config`` of a run on an LSWMD .pkl that is here: ``tool`` (the
    report that asks, and why) reads the file again."""
    cfg = run_config(run)
    data = cfg.get("data")
    if not data or not str(data).endswith(".pkl"):
        raise SystemExit(f"{run}: {tool} needs a run on an LSWMD .pkl file (this one trained on "
                         f"{data or 'generated maps'})")
    if not Path(data).is_file():
        raise SystemExit(f"{run}: its data file {data} is not here")
    return cfg


def _config(run: Path) -> dict:
    cfg = run_config(run)
    if not cfg.get("data"):
        raise SystemExit(f"{run}: trained on generated maps; the ensemble report is for a real file's split")
    return cfg


def split_key(cfg: dict) -> dict:
    from quant.traindata import split_seed, val_fold

    return {k: cfg.get(k) for k in SAME_ROWS} | {"split": split_seed(cfg), "val_fold": val_fold(cfg)}


def check_same_rows(configs: list[dict], runs: list[Path], ignore: tuple = ()) -> None:
    """Refuse runs scored on other rows; ``ignore`` names keys of ``split_key``
    that may differ (quant.label_review takes runs on other validation folds)."""
    first = {k: v for k, v in split_key(configs[0]).items() if k not in ignore}
    for cfg, run in zip(configs[1:], runs[1:]):
        mine = split_key(cfg)
        diff = [k for k in first if first[k] != mine[k]]
        if diff:
            raise SystemExit(f"{run} is scored on other rows than {runs[0]} ({', '.join(diff)} differ: "
                             f"{', '.join(f'{first[k]} against {mine[k]}' for k in diff)}); train the members "
                             "with one --split-seed")


def member_logits(runs: list[Path], configs: list[dict]) -> tuple[list, np.ndarray, list, np.ndarray]:
    """(validation logits a member, validation labels, held-out logits a member, held-out labels)."""
    from quant.fit import predict_logits
    from quant.traindata import load_data
    from quant.train import load_checkpoint, take_rows, validation_rows

    cfg = configs[0]
    ns = argparse.Namespace(**{**cfg, "data": Path(cfg["data"])})
    x, y, x_test, y_test = load_data(ns)
    val, _ = validation_rows(y, cfg)
    x_val, y_val = take_rows(x, val), y[val]
    views = int(cfg.get("views") or 1)
    lv, lt = [], []
    for run in tqdm(runs, desc="members", unit="run"):
        q = load_checkpoint(run / "checkpoint.pt")
        lv.append(predict_logits(q, x_val, n_views=views))
        lt.append(predict_logits(q, x_test, n_views=views))
    return lv, y_val, lt, y_test


def score(logits: list, y: np.ndarray, classes) -> dict:
    pred = np.sum(logits, axis=0).argmax(1)
    s = metrics.summary(y, pred, classes)
    return {"accuracy": s["accuracy"], "balanced_accuracy": s["balanced_accuracy"], "macro_f1": s["macro_f1"],
            "correct": int((pred == y).sum()), "n": len(y)}


def report(runs: list[Path]) -> dict:
    configs = [_config(r) for r in runs]
    check_same_rows(configs, runs)
    lv, y_val, lt, y_test = member_logits(runs, configs)
    classes = tuple(configs[0]["classes"])
    names = [str(r) for r in runs]
    combos, by_size = [], {}
    for k in range(1, len(runs) + 1):
        these = [{"members": [names[i] for i in idx],
                  "seeds": [configs[i].get("seed") for i in idx],
                  "validation": score([lv[i] for i in idx], y_val, classes),
                  "held_out": score([lt[i] for i in idx], y_test, classes)}
                 for idx in itertools.combinations(range(len(runs)), k)]
        acc = [c["validation"]["accuracy"] for c in these]
        by_size[k] = {"combinations": len(these), "validation_min": min(acc), "validation_mean": float(np.mean(acc)),
                      "validation_max": max(acc),
                      "held_out_mean": float(np.mean([c["held_out"]["accuracy"] for c in these]))}
        combos += these
    return {"split": split_key(configs[0]), "combinations": combos, "by_size": by_size}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Score ensembles of quant.train runs that share a split.")
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="quant.train output folders")
    ap.add_argument("--out", type=Path, default=None, help="folder for ensembles.json (default: the first run's)")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        raise SystemExit("an ensemble needs at least two runs")
    res = report(args.runs)
    for c in res["combinations"]:
        v, h = c["validation"], c["held_out"]
        print(f"seeds {','.join(map(str, c['seeds'])):<10} validation {100 * v['accuracy']:6.2f}% "
              f"({v['correct']}/{v['n']}, F1 {v['macro_f1']:.3f}, balanced {100 * v['balanced_accuracy']:.2f}%)   "
              f"held-out {100 * h['accuracy']:6.2f}% (F1 {h['macro_f1']:.3f}, balanced "
              f"{100 * h['balanced_accuracy']:.2f}%)")
    for k, s in res["by_size"].items():
        print(f"{k} member(s), {s['combinations']} combination(s): validation {100 * s['validation_min']:.2f} to "
              f"{100 * s['validation_max']:.2f}% (mean {100 * s['validation_mean']:.2f}%), held-out mean "
              f"{100 * s['held_out_mean']:.2f}%")
    out = args.out or args.runs[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensembles.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
