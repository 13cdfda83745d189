"""Estimated resources of every wafer-map model at 8, 4 and 2 weight bits (hls.estimate).

    python -m bench.hls_resources [--out build/bench] [--target 3000]

The folding of each model is chosen once at W4A4 (``default_parallelism``) and
kept for 8 and 2 bits, so only the bit width moves: the trend of the platform
paper's Fig. 2.2.5 (FF, LUT) and 2.2.6 (BRAM) against weight bits. Activations
stay at 4 bits. Writes hls_resources.json and hls_resources.png into --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hls import estimate as E
from hls import folding as F
from contract import zoo
from contract.spec import CNNSpec

W_BITS = (8, 4, 2)
A_BITS = 4
MODELS = ("wmcnn", *zoo.WAFER_FAMILIES)
# The larger families do not reach the target inside the 60 % BRAM budget of the
# default; they may take 90 % of the device, as a one-model bitstream could.
BENCH_BUDGET = {"bram18": 0.9, "dsp": 0.9, "lut": 0.8, "ff": 0.8}


def spec_of(model: str, w: int):
    if model == "wmcnn":
        return CNNSpec.uniform(w, A_BITS)
    return zoo.ZooSpec(model, w_bits=w, a_bits=A_BITS)


def run(target: float) -> list[dict]:
    rows = []
    for model in MODELS:
        layers4 = spec_of(model, 4).layers()
        budget = None if model == "wmcnn" else BENCH_BUDGET
        par = F.default_parallelism(layers4, target, budget)
        for w in W_BITS:
            spec = spec_of(model, w)
            est = E.estimate(spec.layers(), par)
            try:
                E.check_fits(est)
                fit = "yes"
            except E.DoesNotFit as e:
                fit = str(e)
            wp = est["with_platform"]
            rows.append({"model": model, "name": spec.name, "w_bits": w, "a_bits": A_BITS,
                         "bram18": wp["bram18"], "bram36": wp["bram18"] / 2, "dsp": wp["dsp"],
                         "lut": wp["lut"], "ff": wp["ff"], "utilization": est["utilization"],
                         "cycles": est["cycles"], "latency_us": est["latency_us"],
                         "maps_per_s": est["maps_per_s"], "fits": fit, "parallel": par})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, label in zip(axes, ("bram36", "lut", "ff"), ("BRAM36", "LUT", "FF")):
        for model in MODELS:
            pts = sorted((r["w_bits"], r[key]) for r in rows if r["model"] == model)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model)
        ax.axhline(E.DEVICE[{"bram36": "bram18", "lut": "lut", "ff": "ff"}[key]]
                   / (2 if key == "bram36" else 1), color="grey", ls="--", lw=0.8)
        ax.set_xlabel("weight bits")
        ax.set_ylabel(label)
        ax.set_xticks(W_BITS)
        ax.set_title(f"{label} (estimate, A{A_BITS}, dashed: XC7Z020)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--target", type=float, default=3000.0, help="maps/s the folding aims at")
    args = ap.parse_args(argv)
    rows = run(args.target)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'model':<18}{'BRAM36':>8}{'DSP':>6}{'LUT':>8}{'FF':>8}{'maps/s':>9}  fits")
    for r in rows:
        print(f"{r['name']:<18}{r['bram36']:>8g}{r['dsp']:>6}{r['lut']:>8}{r['ff']:>8}"
              f"{r['maps_per_s']:>9.0f}  {r['fits']}")
    (args.out / "hls_resources.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out / "hls_resources.png")
    print(f"wrote {args.out / 'hls_resources.json'} and {args.out / 'hls_resources.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
