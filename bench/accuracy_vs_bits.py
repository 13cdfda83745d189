"""Accuracy against bit width for every wafer-map family, on synthetic maps.

    python -m bench.accuracy_vs_bits --quick --out build/bench_bits      # minutes
    python -m bench.accuracy_vs_bits --families wmcnn --out DIR          # fuller run
    python -m bench.accuracy_vs_bits --data wm811k-real-train.pkl --families wmcnn \
        --recipe quant/configs/wmcnn_real_4w4a.json --edge-bits 8 --seeds 0,1 --out DIR   # real maps, mean +- spread
    python -m bench.accuracy_vs_bits --merge DIR_SEED0 DIR_SEED1 --out DIR   # seeds run apart, one table

With ``--data`` the maps are real (the held-out split of ``quant.train``) and
every family's FP32 twin trains with batch norms. ``--recipe`` takes a
``quant.train`` config for wmcnn (the one ``make train DATA=`` uses): its
size, class balance, init, optimizer, weight decay, epochs and learning
rates, its pretraining on generated maps (``pretrain_maps``), QAT's tail
averaging (``average_last``, at every width) and its views, so the sweep
measures the recipe itself at every width (below 4 bits the activation
scales start at least error, as in ``wmcnn_real_2w2a.json``). Those
training options reach every family in ``--families``, so another family
is trained the way the wmcnn recipe is; the recipe's architecture (channels,
blocks, die decoder) reaches wmcnn only. ``--edge-bits 8`` adds each width below
8 with the first conv's and the classifier's weights at 8 bits (mode
``W2A2e8``, as in ``wmcnn_real_2w2a_edge8.json``). Each quantized point also
carries the estimator's LUT, BRAM36, DSP and maps/s on the XC7Z020
(``hls.estimate``, default parallelism) and whether it fits; ``pareto.png``
plots accuracy (mean, spread over ``--seeds``) against LUTs. A recipe with
``views`` 8 scores each map by its eight turns and flips (``contract.views``):
its rows also give one view's accuracy (``accuracy_1view``), and maps/s is
the core's images/s (``images_per_s``) over the eight.

Per family: ONE FP32 pre-training, then for W8A8, W4A4, W3A3, W2A2 a QAT
fine-tune starting from it, plus PTQ-8 (the FP32 weights quantized to 8 bits,
activation ranges calibrated, no fine-tuning). Prints a table (parameters,
weight memory in bits = sum over layers of weights x w_bits, accuracy on the
held-out test maps, delta to FP32), writes ``accuracy_vs_bits.json`` and
``accuracy_vs_bits.png`` (accuracy against bits, one line per family).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.bits_report import aggregate, merge, pareto_table, plot, plot_pareto, table
from quant.fit import float_twin, from_float, predict_logits, qat_from
from quant.floatnet import FloatNet
from contract.graph import weight_shape
from contract.spec import CNNSpec
from quant.traindata import make_inputs, pretrain_set
from contract.zoo import ZooSpec

FAMILIES = ("wmcnn", "vgg_s", "mobilenet_s", "alexnet_s")
BITS = (8, 4, 3, 2)
MODES = {  # n_train, n_test, fp_epochs, qat_epochs (at 8/4 bits; 3/2 bits get qat_low)
    "quick": dict(n_train=1200, n_test=400, fp_epochs=4, qat_epochs=1, qat_low=2),
    "full": dict(n_train=6000, n_test=1000, fp_epochs=8, qat_epochs=3, qat_low=6),
}


def make_spec(family: str, bits: int, size: int, width: int | None, channels=None, die_channels: bool = False,
              edge_bits: int | None = None, block_convs=None):
    """The family at W``bits``A``bits``; with ``edge_bits`` (wmcnn) the first
    conv's and the classifier's weights are ``edge_bits`` wide instead."""
    if family == "wmcnn":
        kw = {"channels": tuple(channels)} if channels else {"channels": (width, 2 * width, 4 * width)} \
            if width else {}
        w = bits
        if edge_bits:
            n = CNNSpec.n_convs(kw.get("channels", CNNSpec.channels), block_convs or ())
            w = (edge_bits,) + (bits,) * (n - 1) + (edge_bits,)
        if block_convs:
            kw["block_convs"] = tuple(block_convs)
        return CNNSpec.with_bits(w, bits, in_size=size, die_channels=die_channels, **kw)
    if edge_bits:
        raise ValueError(f"edge_bits is for wmcnn, not {family}")
    return ZooSpec(family, in_size=size, w_bits=bits, a_bits=bits, width=width or 16)


def qat_points(family: str, bits, edge_bits: int | None) -> list[tuple[str, int, int | None]]:
    """(mode, bits, edge_bits) of each QAT point: W{b}A{b} for every width,
    and for wmcnn with ``edge_bits`` also W{b}A{b}e{edge} below that width."""
    points = [(f"W{b}A{b}", b, None) for b in bits]
    if edge_bits and family == "wmcnn":
        points += [(f"W{b}A{b}e{edge_bits}", b, edge_bits) for b in bits if b < edge_bits]
    return points


def weight_memory(spec) -> tuple[int, int]:
    """(weights, bits): weight count and weight memory in bits (biases excluded)."""
    n = bits = 0
    for layer in spec.layers():
        if layer["type"] in ("conv2d", "dense"):
            k = int(np.prod(weight_shape(layer)))
            n += k
            bits += k * layer["w_bits"]
    return n, bits


def hw_estimate(spec) -> dict:
    """The estimator's figures for ``spec`` on the XC7Z020 (hls.estimate, its
    default parallelism): LUT, BRAM36, DSP, maps/s, and whether it fits."""
    from hls import estimate as E
    from hls import folding as F

    layers = spec.layers()
    est = E.estimate(layers, F.default_parallelism(layers))
    w = est["with_platform"]
    return {"lut": int(w["lut"]), "bram36": float(est["bram36"]), "dsp": int(w["dsp"]),
            "maps_per_s": float(est["maps_per_s"]), "fits": bool(E.fits(est))}


def _scored(model, x, y, n_views: int) -> dict:
    """accuracy and macro_f1 at the recipe's views (one inference pass); with
    views, one view's accuracy too."""
    from quant import metrics

    pred = predict_logits(model, x, n_views=n_views).argmax(1)
    out = dict(accuracy=float((pred == y).mean()),
               macro_f1=float(metrics.summary(y, pred, tuple(range(9)))["macro_f1"]))
    if n_views > 1:
        out["accuracy_1view"] = float((predict_logits(model, x).argmax(1) == y).mean())
    return out


def _hw(spec, n_views: int) -> dict:
    """hw_estimate with maps/s per map: a map is ``n_views`` core runs."""
    hw = hw_estimate(spec)
    if n_views > 1:
        hw.update(images_per_s=hw["maps_per_s"], maps_per_s=hw["maps_per_s"] / n_views, views=n_views)
    return hw


# Depthwise-separable nets train their FP32 twin with batch norms and are
# cross-layer equalized before quantization: folded into per-tensor scales,
# their depthwise channels' ranges differ so much that at 4 bits most of a
# layer rounds to zero (mobilenet_s W4A4: 86.2% against 93.5% FP32 without).
# Their activation scales start at the MSE optimum, and they get
# ``qat_scale`` times the QAT epochs: nine 2-bit layers in a row recover
# slowly (W2A2: 57% after 10 epochs, 95% after 60).
RECIPES = {"mobilenet_s": {"bn": True, "equalize": True, "act_init": "mse", "qat_scale": 10}}


def _recipe(family, args) -> dict:
    # On real maps every family trains its FP32 twin with batch norms (the
    # real-data recipe, quant/configs/wmcnn_real_4w4a.json). The recipe's
    # training options are not wmcnn's alone: a family compared at another
    # schedule would be compared on its schedule, not on its architecture.
    recipe = dict(RECIPES.get(family, {}))
    if args.data is not None:
        recipe["bn"] = True
    if args.recipe:
        keys = ("bn", "balanced", "qat_lr", "init", "average_last", "pretrain_maps", "pretrain_epochs",
                "optimizer", "weight_decay")
        recipe.update({k: args.recipe[k] for k in keys if k in args.recipe})
        # qat_scale lengthens the short generated-map schedule (3 and 6
        # epochs); a recipe's own schedule (40 at every width for the real
        # maps) is what the families are compared on, so every family gets it.
        recipe.pop("qat_scale", None)
    return recipe


def load_recipe(path: Path, args, cfg: dict) -> dict:
    """A quant.train config's options for wmcnn; they set size, blocks and
    epochs unless given here on the command line."""
    from quant import train_args

    opts = train_args.load_config(path, train_args.build_parser())
    if opts.get("family", "wmcnn") != "wmcnn":
        raise SystemExit(f"{path}: --recipe takes a wmcnn config, this one is {opts['family']}")
    if args.size is None and "size" in opts:
        args.size = opts["size"]
    if args.channels is None and opts.get("channels"):
        args.channels = tuple(opts["channels"])
    for key in ("fp_epochs", "qat_epochs"):
        if getattr(args, key) is None and key in opts:
            cfg[key] = opts[key]
    if args.qat_low is None and "qat_epochs" in opts:
        cfg["qat_low"] = opts["qat_epochs"]
    if args.lr is None and "lr" in opts:
        args.lr = opts["lr"]
    return opts


def float_net(family, spec, x, y, cfg, args) -> FloatNet:
    """The family's FP32 twin, trained as RECIPES says (plain by default)."""
    recipe = _recipe(family, args)
    pretrain = None
    if recipe.get("pretrain_maps"):
        pretrain = pretrain_set(recipe["pretrain_maps"], recipe.get("pretrain_epochs", 10), x.shape[1],
                                args.seed, spec.classes)
    return float_twin(spec, x, y, cfg["fp_epochs"], args.seed, bn=recipe.get("bn", False),
                      equalize=recipe.get("equalize", False), lr=args.lr, desc=f"{family} fp32",
                      balanced=recipe.get("balanced", "none"), init=recipe.get("init", "he"),
                      pretrain=pretrain, optimizer=recipe.get("optimizer", "adam"),
                      weight_decay=recipe.get("weight_decay", 0.0))


def run_family(family, x, y, xt, yt, cfg, args) -> list[dict]:
    rows = []
    t0 = time.time()
    channels = args.channels if family == "wmcnn" else None
    die = family == "wmcnn" and bool(args.recipe and args.recipe.get("die_channels"))
    blocks = args.recipe.get("block_convs") if family == "wmcnn" and args.recipe else None
    spec_fp = make_spec(family, 8, args.size, args.width, channels, die, block_convs=blocks)
    fp = float_net(family, spec_fp, x, y, cfg, args)
    # The real-map recipe classifies a map by its eight turns and flips (contract.views).
    nv = int(args.recipe.get("views", 1)) if args.recipe else 1
    n_w, _ = weight_memory(spec_fp)
    fp_row = dict(family=family, mode="fp32", bits=32, params=n_w, weight_bits=32 * n_w,
                  **_scored(fp, xt, yt, nv), seconds=time.time() - t0, seed=args.seed)
    fp_acc = fp_row["accuracy"]
    rows.append(fp_row)
    ptq = from_float(spec_fp, fp, x[:512])
    rows.append(dict(family=family, mode="ptq8", bits=8, params=n_w, weight_bits=8 * n_w,
                     **_scored(ptq, xt, yt, nv), seconds=0.0, seed=args.seed, **_hw(spec_fp, nv)))
    recipe = _recipe(family, args)
    for mode, b, edge in qat_points(family, args.bits, args.edge_bits):
        t1 = time.time()
        spec = make_spec(family, b, args.size, args.width, channels, die, edge, blocks)
        epochs = (cfg["qat_epochs"] if b >= 4 else cfg["qat_low"]) * recipe.get("qat_scale", 1)
        qat_lr = recipe.get("qat_lr") or (args.lr / 2 if b >= 4 else args.lr)
        act_init = recipe.get("act_init", "mse" if args.recipe and b < 4 else "stats")
        q = qat_from(spec, fp, x, y, epochs, args.seed, qat_lr=qat_lr, act_init=act_init,
                     balanced=recipe.get("balanced", "none"), average_last=recipe.get("average_last", 0))
        n, wbits = weight_memory(spec)
        rows.append(dict(family=family, mode=mode, bits=b, edge_bits=edge, params=n, weight_bits=wbits,
                         **_scored(q, xt, yt, nv), qat_epochs=epochs,
                         seconds=time.time() - t1, seed=args.seed, **_hw(spec, nv)))
    for r in rows:
        r["delta_vs_fp32"] = r["accuracy"] - fp_acc
        if channels:
            r["channels"] = list(channels)
        if blocks:
            r["block_convs"] = list(blocks)
        if args.label:
            r["family"], r["arch"] = args.label, family
    return rows


def real_data(args, cfg):
    """Train / held-out inputs of an LSWMD file (the split quant.train tests on)."""
    from quant.datasets import wm811k

    d = wm811k.load(args.data, n_classes=9, size=args.size, seed=0)
    x, y = d.train.maps, d.train.labels
    if cfg.get("n_train") and cfg["n_train"] < len(y):
        keep = np.random.default_rng(0).permutation(len(y))[:cfg["n_train"]]
        x, y = x[np.sort(keep)], y[np.sort(keep)]
    return x, y, d.test.maps, d.test.labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/bench_bits"))
    ap.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                    help="merge the accuracy_vs_bits.json of earlier runs (e.g. one seed each) into --out; "
                         "trains nothing")
    ap.add_argument("--quick", action="store_true", help="small data, few epochs (a few minutes)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--size", type=int, default=None, help="input side (default 42, or the recipe's)")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None, help="peak FP32 learning rate (default 3e-3, or the recipe's)")
    ap.add_argument("--recipe", type=Path, default=None,
                    help="a quant.train config for wmcnn (e.g. quant/configs/wmcnn_real_4w4a.json); "
                         "its training options and views reach every family, its architecture wmcnn only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bits", default=",".join(map(str, BITS)),
                    help="QAT bit widths to run, e.g. 2 (FP32 and PTQ-8 always run)")
    ap.add_argument("--edge-bits", type=int, default=None,
                    help="wmcnn: also run each width below this with the first conv's and the classifier's "
                         "weights at this width (mode W2A2e8), as in wmcnn_real_2w2a_edge8.json")
    ap.add_argument("--data", type=Path, default=None,
                    help="real maps (LSWMD .pkl): train on its train split, test on its held-out split")
    ap.add_argument("--seeds", default=None, help="several seeds, e.g. 0,1,2: mean and spread per point")
    ap.add_argument("--channels", default=None, help="wmcnn blocks, e.g. 16,32,64,64 (the real-data recipe)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--label", default=None,
                    help="name the rows carry in place of the family (kept as 'arch'), so that "
                         "one family at other channels merges as a point of its own, e.g. "
                         "--label wmcnn-wide --recipe quant/configs/wmcnn_real_2w2a_wide.json")
    for k in ("n_train", "n_test", "fp_epochs", "qat_epochs", "qat_low"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None)
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if args.label and "," in args.families:
        ap.error("--label names one family's rows: give one --families")
    args.bits = [int(b) for b in args.bits.split(",")]
    if any(not 2 <= b <= 8 for b in args.bits):
        ap.error("--bits takes widths from 2 to 8")
    if args.edge_bits is not None and not 2 <= args.edge_bits <= 8:
        ap.error("--edge-bits takes a width from 2 to 8")
    import torch

    torch.set_num_threads(args.threads)
    args.channels = tuple(int(c) for c in args.channels.split(",")) if args.channels else None
    cfg = dict(MODES["quick" if args.quick else "full"])
    cfg.update({k: getattr(args, k) for k in cfg if getattr(args, k) is not None})
    args.recipe = load_recipe(args.recipe, args, cfg) if args.recipe else None
    args.size, args.lr = args.size or 42, args.lr or 3e-3
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    if args.data is not None:
        x, y, xt, yt = real_data(args, cfg)
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        args.seed = seed
        if args.data is None:
            x, y = make_inputs(cfg["n_train"], seed, args.size)
            xt, yt = make_inputs(cfg["n_test"], seed + 1000, args.size)
        for fam in args.families.split(","):
            rows += run_family(fam, x, y, xt, yt, cfg, args)
            agg = aggregate(rows)
            (args.out / "accuracy_vs_bits.json").write_text(json.dumps(
                {"config": cfg, "recipe": args.recipe, "data": str(args.data) if args.data else "synthetic",
                 "seeds": seeds,
                 "rows": rows, "aggregate": agg}, indent=1))
            mine = [r for r in rows if r.get("arch", r["family"]) == fam and r["seed"] == seed]
            print(table(mine), flush=True)
    print("\n" + pareto_table(aggregate(rows)))
    plot([r for r in rows if r["seed"] == seeds[0]], args.out / "accuracy_vs_bits.png")
    plot_pareto(aggregate(rows), args.out / "pareto.png")
    print(f"wrote {args.out / 'accuracy_vs_bits.json'}, accuracy_vs_bits.png and pareto.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
