"""Accuracy against bit width for every wafer-map family, on synthetic maps.

    python -m bench.accuracy_vs_bits --quick --out build/bench_bits      # minutes
    python -m bench.accuracy_vs_bits --families wmcnn --out DIR          # fuller run

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

from quant.fit import float_twin, from_float, predict_logits, qat_from
from quant.floatnet import FloatNet
from quant.graph import weight_shape
from quant.spec import CNNSpec
from quant.traindata import make_inputs
from quant.zoo import ZooSpec

FAMILIES = ("wmcnn", "vgg_s", "mobilenet_s", "alexnet_s")
BITS = (8, 4, 3, 2)
MODES = {  # n_train, n_test, fp_epochs, qat_epochs (at 8/4 bits; 3/2 bits get qat_low)
    "quick": dict(n_train=1200, n_test=400, fp_epochs=4, qat_epochs=1, qat_low=2),
    "full": dict(n_train=6000, n_test=1000, fp_epochs=8, qat_epochs=3, qat_low=6),
}


def make_spec(family: str, bits: int, size: int, width: int | None):
    if family == "wmcnn":
        kw = {"channels": (width, 2 * width, 4 * width)} if width else {}
        return CNNSpec.uniform(bits, bits, in_size=size, **kw)
    return ZooSpec(family, in_size=size, w_bits=bits, a_bits=bits, width=width or 16)


def weight_memory(spec) -> tuple[int, int]:
    """(weights, bits): weight count and weight memory in bits (biases excluded)."""
    n = bits = 0
    for layer in spec.layers():
        if layer["type"] in ("conv2d", "dense"):
            k = int(np.prod(weight_shape(layer)))
            n += k
            bits += k * layer["w_bits"]
    return n, bits


def acc(model, x, y) -> float:
    return float((predict_logits(model, x).argmax(1) == y).mean())


# Depthwise-separable nets train their FP32 twin with batch norms and are
# cross-layer equalized before quantization: folded into per-tensor scales,
# their depthwise channels' ranges differ so much that at 4 bits most of a
# layer rounds to zero (mobilenet_s W4A4: 86.2% against 93.5% FP32 without).
# Their activation scales start at the MSE optimum, and they get
# ``qat_scale`` times the QAT epochs: nine 2-bit layers in a row recover
# slowly (W2A2: 57% after 10 epochs, 95% after 60).
RECIPES = {"mobilenet_s": {"bn": True, "equalize": True, "act_init": "mse", "qat_scale": 10}}


def float_net(family, spec, x, y, cfg, args) -> FloatNet:
    """The family's FP32 twin, trained as RECIPES says (plain by default)."""
    recipe = RECIPES.get(family, {})
    return float_twin(spec, x, y, cfg["fp_epochs"], args.seed, bn=recipe.get("bn", False),
                      equalize=recipe.get("equalize", False), lr=args.lr, desc=f"{family} fp32")


def run_family(family, x, y, xt, yt, cfg, args) -> list[dict]:
    rows = []
    t0 = time.time()
    spec_fp = make_spec(family, 8, args.size, args.width)
    fp = float_net(family, spec_fp, x, y, cfg, args)
    n_w, _ = weight_memory(spec_fp)
    fp_acc = acc(fp, xt, yt)
    rows.append(dict(family=family, mode="fp32", bits=32, params=n_w, weight_bits=32 * n_w, accuracy=fp_acc,
                     seconds=time.time() - t0))
    ptq = from_float(spec_fp, fp, x[:512])
    rows.append(dict(family=family, mode="ptq8", bits=8, params=n_w, weight_bits=8 * n_w,
                     accuracy=acc(ptq, xt, yt), seconds=0.0))
    recipe = RECIPES.get(family, {})
    for b in args.bits:
        t1 = time.time()
        spec = make_spec(family, b, args.size, args.width)
        epochs = (cfg["qat_epochs"] if b >= 4 else cfg["qat_low"]) * recipe.get("qat_scale", 1)
        q = qat_from(spec, fp, x, y, epochs, args.seed, qat_lr=args.lr / 2 if b >= 4 else args.lr,
                     act_init=recipe.get("act_init", "stats"))
        n, wbits = weight_memory(spec)
        rows.append(dict(family=family, mode=f"W{b}A{b}", bits=b, params=n, weight_bits=wbits,
                         accuracy=acc(q, xt, yt), qat_epochs=epochs, seconds=time.time() - t1))
    for r in rows:
        r["delta_vs_fp32"] = r["accuracy"] - fp_acc
    return rows


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for fam in dict.fromkeys(r["family"] for r in rows):
        pts = sorted((r["bits"], 100 * r["accuracy"]) for r in rows if r["family"] == fam and r["mode"] != "ptq8"
                     and r["mode"] != "fp32")
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=fam)
        fp = [100 * r["accuracy"] for r in rows if r["family"] == fam and r["mode"] == "fp32"][0]
        ax.axhline(fp, color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("weight and activation bits (QAT); dotted: FP32")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(BITS)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows) -> str:
    head = f"{'family':12s} {'mode':6s} {'params':>8s} {'weight bits':>12s} {'accuracy':>9s} {'vs FP32':>8s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['family']:12s} {r['mode']:6s} {r['params']:8d} {r['weight_bits']:12d} "
                     f"{100 * r['accuracy']:8.2f}% {100 * r['delta_vs_fp32']:+7.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/bench_bits"))
    ap.add_argument("--quick", action="store_true", help="small data, few epochs (a few minutes)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--size", type=int, default=42)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bits", default=",".join(map(str, BITS)),
                    help="QAT bit widths to run, e.g. 2 (FP32 and PTQ-8 always run)")
    for k in ("n_train", "n_test", "fp_epochs", "qat_epochs", "qat_low"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None)
    args = ap.parse_args(argv)
    args.bits = [int(b) for b in args.bits.split(",")]
    if any(not 2 <= b <= 8 for b in args.bits):
        ap.error("--bits takes widths from 2 to 8")
    cfg = dict(MODES["quick" if args.quick else "full"])
    cfg.update({k: getattr(args, k) for k in cfg if getattr(args, k) is not None})
    x, y = make_inputs(cfg["n_train"], args.seed, args.size)
    xt, yt = make_inputs(cfg["n_test"], args.seed + 1000, args.size)
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for fam in args.families.split(","):
        rows += run_family(fam, x, y, xt, yt, cfg, args)
        (args.out / "accuracy_vs_bits.json").write_text(json.dumps({"config": cfg, "rows": rows}, indent=1))
        print(table([r for r in rows if r["family"] == fam]), flush=True)
    print("\n" + table(rows))
    plot(rows, args.out / "accuracy_vs_bits.png")
    print(f"wrote {args.out / 'accuracy_vs_bits.json'} and accuracy_vs_bits.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
