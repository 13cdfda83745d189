"""Sim-to-real: the generator (``quant.synth``) against real WM-811K maps.

    python -m quant.sim2real --data ../shared/data/wm811k-real-train.pkl --out build/sim2real

1. Statistics of the real file and of both generator profiles (``default``,
   ``wm811k``): die-grid rows and aspect, dies per wafer, share of failing
   dies and the mean radius of the failing dies, per class
   (``sim2real_stats.json``). The ``wm811k`` profile's constants in
   ``quant.synth`` come from this table.
2. Training on generated maps only, evaluated on the real file's held-out
   split (the stratified split ``quant.train`` tests on at its default seed,
   whatever ``--seed`` is): FP32 and W4A4.
3. Real only against real plus generated maps, on the same split.

Writes ``sim2real.json`` and prints a table. Trains as ``--config`` does
(default ``quant/configs/wmcnn_real_4w4a.json``: model, blocks, size, die
decoder, class balance, init, optimizer, learning rates, weight decay) for
the epochs given here; ``--block-convs``, ``--init``, ``--optimizer``,
``--lr``, ``--qat-lr`` and ``--weight-decay`` override the config (``--init
he --optimizer adam --lr 3e-3 --qat-lr 1e-3 --weight-decay 0 --block-convs
1,1,1,1`` is the earlier recipe the README also reports).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from quant import metrics, synth
from contract.spec import WAFER_CLASSES

RUNS = ("synth_default_only", "synth_wm811k_only", "real_only", "real_plus_synth")


def map_stats(maps, labels) -> dict:
    shapes = np.array([m.shape for m in maps], dtype=float)
    out = {"n": len(maps),
           "rows_q10_50_90": np.quantile(shapes[:, 0], [0.1, 0.5, 0.9]).tolist(),
           "aspect_q5_50_95": np.quantile(shapes[:, 1] / shapes[:, 0], [0.05, 0.5, 0.95]).round(3).tolist(),
           "classes": {}}
    labels = np.asarray(labels)
    for k, c in enumerate(WAFER_CLASSES):
        ms = [m for m, lab in zip(maps, labels) if lab == k]
        if not ms:
            continue
        dies = np.array([(m > 0).sum() for m in ms])
        fail = np.array([(m == 2).sum() / max((m > 0).sum(), 1) for m in ms])
        rad = []
        for m in ms:
            h, w = m.shape
            y, x = np.nonzero(m == 2)
            if len(y):
                rad.append(float(np.mean(np.hypot((y + 0.5) / h * 2 - 1, (x + 0.5) / w * 2 - 1))))
        rows = np.array([m.shape[0] for m in ms], dtype=float)
        aspect = np.array([m.shape[1] / m.shape[0] for m in ms])
        square = np.abs(aspect - 1) < 0.03
        out["classes"][c] = {"n": len(ms), "dies_median": float(np.median(dies)),
                             "fail_q10_50_90": np.quantile(fail, [0.1, 0.5, 0.9]).round(4).tolist(),
                             "fail_radius_median": float(np.median(rad)) if rad else None,
                             "rows_q": np.quantile(rows, synth.ROWS_QUANTILES).round(1).tolist(),
                             "square_share": round(float(square.mean()), 3),
                             "log_aspect_std": round(float(np.std(np.log(aspect[~square]))), 3)
                             if (~square).any() else None}
    return out


def _train_eval(x, y, x_test, y_test, cfg, seed, fp_epochs, qat_epochs, opt):
    """``opt``: init, optimizer, lr, qat_lr and weight_decay of the training."""
    import torch

    from quant.fit import predict_logits, train_qat
    from quant.train import make_spec

    torch.set_num_threads(1)
    spec = make_spec(argparse.Namespace(family="wmcnn", w_bits=4, a_bits=4, size=cfg["size"],
                                        classes=WAFER_CLASSES, channels=cfg["channels"], width=None,
                                        die_channels=cfg.get("die_channels", False),
                                        block_convs=cfg.get("block_convs")))
    t0 = time.time()
    fp, q = train_qat(spec, x, y, fp_epochs, qat_epochs, seed, bn=cfg.get("bn", False),
                      augment="dihedral", balanced=cfg.get("balanced", "none"), **opt)
    res = {"train_seconds": time.time() - t0, "n_train": int(len(y))}
    for key, model in (("fp32", fp), ("qat", q)):
        res[key] = metrics.summary(y_test, predict_logits(model, x_test).argmax(1), WAFER_CLASSES)
    return res


def training_options(args, cfg: dict) -> tuple[dict, dict]:
    """The config with the command line's blocks, and the training options
    ``_train_eval`` passes on, each the command line's, else the config's.
    A key the config lacks takes this tool's earlier defaults (He init, Adam
    at 3e-3, QAT 1e-3, no weight decay, one conv a block)."""
    picked = {"init": "he", "optimizer": "adam", "lr": 3e-3, "qat_lr": 1e-3, "weight_decay": 0.0,
              "block_convs": None}
    for key, default in picked.items():
        given = getattr(args, key)
        picked[key] = given if given is not None else cfg.get(key, default)
    cfg = {**cfg, "block_convs": picked.pop("block_convs")}
    return cfg, picked


def _counts(text: str) -> tuple[int, ...]:
    # quant.train_args has the same parser, but importing it loads torch.
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected counts such as 1,1,2,2") from None


def main(argv=None) -> int:
    from quant.datasets import wm811k
    from quant.traindata import add_generated, preprocess

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="LSWMD-format pickle of real maps")
    ap.add_argument("--out", type=Path, default=Path("build/sim2real"))
    ap.add_argument("--config", type=Path, default=Path(__file__).parent / "configs" / "wmcnn_real_4w4a.json")
    ap.add_argument("--n-synth", type=int, default=12000, help="generated maps for training")
    ap.add_argument("--runs", default=",".join(RUNS),
                    help=f"comma list of the trainings to run (default all: {','.join(RUNS)})")
    ap.add_argument("--fp-epochs", type=int, default=4)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="seed of the generator and the training (not the split)")
    ap.add_argument("--stats-only", action="store_true")
    # quant.floatnet.INITS, spelled out: importing it loads torch, which --stats-only never needs.
    ap.add_argument("--init", choices=("he", "torch"), default=None,
                    help="FP32 weight init (quant.floatnet.INITS); default the config's")
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default=None,
                    help="the FP32 stage's optimizer (quant.fit.OPTIMIZERS); default the config's")
    ap.add_argument("--lr", type=float, default=None, help="peak FP32 learning rate; default the config's")
    ap.add_argument("--qat-lr", type=float, default=None, help="peak QAT learning rate, Adam; default the config's")
    ap.add_argument("--weight-decay", type=float, default=None, help="FP32 weight decay; default the config's")
    ap.add_argument("--block-convs", type=_counts, default=None,
                    help="convs in each block, e.g. 1,1,1,1; default the config's")
    args = ap.parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not runs or set(runs) - set(RUNS):
        ap.error(f"--runs: choose from {', '.join(RUNS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg, opt = training_options(args, json.loads(args.config.read_text()))
    size = cfg["size"]
    # quant.train's default split whatever --seed says: the generator's
    # constants were measured on its training rows only, so the test rows
    # stay unseen by every step and the generator-only figure is held out.
    raw = wm811k.load(args.data, n_classes=9, seed=0)
    stats = {"real": map_stats(raw.train.maps, raw.train.labels)}
    for profile in synth.PROFILES:
        stats[profile] = map_stats(*synth.dataset(900, seed=args.seed + 99, profile=profile))
    (args.out / "sim2real_stats.json").write_text(json.dumps(stats, indent=1))
    print(f"{'class':10s} " + " ".join(f"{k + ' fail% / radius':>24s}" for k in stats))
    for c in WAFER_CLASSES:
        cells = []
        for k in stats:
            v = stats[k]["classes"].get(c)
            cells.append(f"{100 * v['fail_q10_50_90'][1]:14.1f} / {v['fail_radius_median']:.2f}   " if v else " " * 24)
        print(f"{c:10s} " + " ".join(cells))
    if args.stats_only:
        return 0
    x_real, y_real = preprocess(raw.train.maps, size), raw.train.labels
    x_test, y_test = preprocess(raw.test.maps, size), raw.test.labels
    results = {"config": str(args.config), "fp_epochs": args.fp_epochs, "qat_epochs": args.qat_epochs,
               **opt, "block_convs": cfg["block_convs"],
               "n_test_real": int(len(y_test))}
    for profile in synth.PROFILES:
        if f"synth_{profile}_only" in runs:
            sm, sl = synth.dataset(args.n_synth, seed=args.seed + 1, profile=profile)
            results[f"synth_{profile}_only"] = _train_eval(preprocess(sm, size), sl, x_test, y_test, cfg,
                                                           args.seed, args.fp_epochs, args.qat_epochs, opt)
    if "real_only" in runs:
        results["real_only"] = _train_eval(x_real, y_real, x_test, y_test, cfg, args.seed, args.fp_epochs,
                                           args.qat_epochs, opt)
    if "real_plus_synth" in runs:
        x_mix, y_mix = add_generated(x_real, y_real, len(y_real), size, args.seed + 2)
        results["real_plus_synth"] = _train_eval(x_mix, y_mix, x_test, y_test, cfg, args.seed,
                                                 args.fp_epochs, args.qat_epochs, opt)
    (args.out / "sim2real.json").write_text(json.dumps({"stats": stats, **results}, indent=1))
    print(f"{'training data':26s} {'n':>6s} {'FP32':>7s} {'W4A4':>7s} {'macro-F1':>8s}  (real held-out, "
          f"{len(y_test)} maps)")
    for key, r in results.items():
        if isinstance(r, dict) and "qat" in r:
            print(f"{key:26s} {r['n_train']:6d} {100 * r['fp32']['accuracy']:6.1f}% {100 * r['qat']['accuracy']:6.1f}% "
                  f"{r['qat']['macro_f1']:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
