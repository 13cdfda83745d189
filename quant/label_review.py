"""Maps whose label the trained models all dispute: a review list for the
people who label a fab's maps.

    python -m quant.label_review --runs DIR... [--confidence 0.9] [--show 40] [--out DIR]

The runs are ``quant.train`` runs on one LSWMD .pkl with one split (data,
split seed, size, classes, views); they may validate on different folds
(``--val-fold``), and the ten folds are the useful set:

* held-out rows: every run scores them. A row is *disputed* when every run
  calls it one and the same other class.
* training rows: a run scores only its own validation fold, the rows it never
  trained on, so each row a fold covers gets an out-of-fold call. A row is
  disputed when every run that held it out calls the same other class, each
  with at least ``--confidence`` (softmax at the temperature the run's reject
  score calibrated).

A disputed label is not proven wrong: some are maps the models cannot read.
The galleries are there so that a person decides. Writes ``label_review.json``
(counts by class, each disputed row with its row position in the file, its
label, the models' class and votes) and ``disputed_held_out.png`` and
``disputed_training.png``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from quant import metrics
from quant.ensemble_report import check_same_rows, pkl_run_config, split_key
from quant.traindata import val_fold

# Runs may validate on different folds; every other key of the split must agree.
MAY_DIFFER = ("val_fold",)


def _scores(runs: list[Path], configs: list[dict]):
    """Per run: held-out predictions [N_test], and (validation rows, their
    predictions, their calibrated top probability). Also the loaded file."""
    from quant.fit import predict_logits
    from quant.traindata import load_pkl
    from quant.train import load_checkpoint, validation_rows

    cfg = configs[0]
    loaded = load_pkl(argparse.Namespace(**{**cfg, "data": Path(cfg["data"])}))
    views = int(cfg.get("views") or 1)
    held, oof = [], []
    for run, rcfg in zip(tqdm(runs, desc="runs", unit="run"), configs):
        q = load_checkpoint(run / "checkpoint.pt")
        held.append(predict_logits(q, loaded.test.maps, n_views=views).argmax(1))
        val, _ = validation_rows(loaded.train.labels, rcfg)
        temp = json.loads((run / "metrics.json").read_text()).get("reject", {}).get("temperature", 1.0)
        p = metrics.softmax(predict_logits(q, loaded.train.maps[val], n_views=views), temp)
        oof.append((val, p.argmax(1), p.max(1)))
    return loaded, np.array(held), oof


def _by_class(labels: np.ndarray, disputed: np.ndarray, classes, covered=None) -> dict:
    covered = np.ones(len(labels), bool) if covered is None else covered
    return {c: {"n": int((covered & (labels == k)).sum()), "disputed": int((disputed & (labels == k)).sum())}
            for k, c in enumerate(classes)}


def held_out_review(held: np.ndarray, labels: np.ndarray, rows: np.ndarray, classes) -> dict:
    """``held``: [runs][N] predicted classes of the held-out rows."""
    wrong = held != labels[None, :]
    disputed = wrong.all(0) & (held == held[:1]).all(0)
    out = {"n": len(labels), "disputed": int(disputed.sum()), "wrong_by_all": int(wrong.all(0).sum()),
           "wrong_by_run": [int(w) for w in wrong.sum(1)],
           "by_class": _by_class(labels, disputed, classes), "rows": []}
    for i in np.flatnonzero(disputed):
        out["rows"].append({"index": int(i), "row": int(rows[i]), "label": classes[labels[i]],
                            "models": classes[held[0, i]], "votes": len(held)})
    return out


def training_review(oof: list, labels: np.ndarray, rows: np.ndarray, classes, confidence: float) -> dict:
    """``oof``: per run (validation rows, predicted classes, top probability)."""
    n = len(labels)
    calls = np.zeros(n, int)
    agree = np.ones(n, bool)
    first = np.full(n, -1)
    low = np.full(n, np.inf)
    for val, pred, top in oof:
        new = first[val] < 0
        first[val[new]] = pred[new]
        agree[val] &= pred == first[val]
        low[val] = np.minimum(low[val], top)
        calls[val] += 1
    covered = calls > 0
    disputed = covered & agree & (first != labels) & (low >= confidence)
    out = {"n": n, "covered": int(covered.sum()), "confidence": confidence,
           "wrong_out_of_fold": int((covered & (first != labels) & agree).sum()),
           "disputed": int(disputed.sum()), "by_class": _by_class(labels, disputed, classes, covered),
           "rows": []}
    for i in np.flatnonzero(disputed):
        out["rows"].append({"index": int(i), "row": int(rows[i]), "label": classes[labels[i]],
                            "models": classes[first[i]], "votes": int(calls[i]), "confidence": float(low[i])})
    return out


def review(runs: list[Path], confidence: float = 0.9) -> tuple[dict, object]:
    if not 0.0 <= confidence <= 1.0:
        raise SystemExit(f"--confidence {confidence}: a probability, 0 to 1")
    configs = [pkl_run_config(r, "the label review (it names each map's row in the file)") for r in runs]
    check_same_rows(configs, runs, ignore=MAY_DIFFER)
    loaded, held, oof = _scores(runs, configs)
    classes = tuple(configs[0]["classes"])
    res = {"runs": [str(r) for r in runs], "split": {k: v for k, v in split_key(configs[0]).items() if k not in MAY_DIFFER},
           "val_folds": sorted({val_fold(c) for c in configs}),
           "held_out": held_out_review(held, loaded.test.labels, loaded.test.rows, classes),
           "training": training_review(oof, loaded.train.labels, loaded.train.rows, classes, confidence)}
    return res, loaded


def plot_gallery(entries: list[dict], maps: np.ndarray, path: Path, title: str, show: int) -> None:
    """The first ``show`` disputed maps, model input as drawn, titled with the
    file row, the label and the models' class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = entries[:show]
    cols = 8
    nrows = max(1, -(-len(entries) // cols))
    fig, axs = plt.subplots(nrows, cols, figsize=(2 * cols, 2.7 * nrows + 0.6), squeeze=False)
    for ax in axs.flat:
        ax.axis("off")
    for ax, e in zip(axs.flat, entries):
        ax.imshow(maps[e["index"], ..., 0], cmap="viridis", interpolation="nearest", vmin=0, vmax=255)
        ax.set_title(f"row {e['row']}\nlabel {e['label']}\nmodels {e['models']}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="List the maps whose label every trained model disputes.")
    ap.add_argument("--runs", type=Path, nargs="+", required=True,
                    help="quant.train output folders on one .pkl and split (for example its ten --val-fold runs)")
    ap.add_argument("--confidence", type=float, default=0.9,
                    help="a training row is disputed only when each out-of-fold call is at least this sure")
    ap.add_argument("--show", type=int, default=40, help="maps a gallery draws")
    ap.add_argument("--out", type=Path, default=None, help="folder for the outputs (default: the first run's)")
    args = ap.parse_args(argv)
    res, loaded = review(args.runs, args.confidence)
    h, t = res["held_out"], res["training"]
    print(f"{'class':<10} {'held-out':>9} {'disputed':>9} {'training':>9} {'disputed':>9}")
    for c in h["by_class"]:
        print(f"{c:<10} {h['by_class'][c]['n']:9d} {h['by_class'][c]['disputed']:9d} "
              f"{t['by_class'][c]['n']:9d} {t['by_class'][c]['disputed']:9d}")
    print(f"held-out: {h['disputed']} of {h['n']} maps ({100 * h['disputed'] / h['n']:.2f}%) called one other class "
          f"by all {len(args.runs)} runs; {h['wrong_by_all']} wrong by all")
    if t["covered"]:
        print(f"training: {t['disputed']} of the {t['covered']} rows held out by folds "
              f"{','.join(map(str, res['val_folds']))} called another class out of fold at >= {t['confidence']:g}")
    out = args.out or args.runs[0]
    out.mkdir(parents=True, exist_ok=True)
    plot_gallery(h["rows"], loaded.test.maps, out / "disputed_held_out.png",
                 f"held-out maps every run calls another class ({h['disputed']})", args.show)
    plot_gallery(t["rows"], loaded.train.maps, out / "disputed_training.png",
                 f"training maps called another class out of fold ({t['disputed']})", args.show)
    (out / "label_review.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'label_review.json'}, disputed_held_out.png and disputed_training.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
