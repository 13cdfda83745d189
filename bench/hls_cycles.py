"""Speed and resources of every wafer-map model's core: the cycle-accounting C-sim against the estimate.

    python -m bench.hls_cycles [--out build/bench] [--bits 8,4,2]

For each model (the W4A4 CNN and the zoo families, ``bench.hls_resources``'
list) the folding is ``default_parallelism`` at W4A4 with no target (the
fastest balanced folding inside issue 16's budget: LUT 70 %, BRAM 60 %, DSP
220), kept for every bit width. A random-weight core is built with
-DWQ_CYCLES (``hls.cycles``) and run on one image, bit-exact against the
integer reference. Next to the measured DATAFLOW interval: ``hls.estimate``'s
and their gap, maps/s at 100 MHz, one INFER's latency, resources, the
previous templates' figures (layers one after another, ``BEFORE``) and
FINN's CNV-W1A1 anchor. Every figure is a model of the HLS schedule, not a
synthesis or hardware result. Writes hls_cycles.json, hls_cycles.md and
hls_cycles.png into --out.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tqdm import tqdm

from bench.hls_resources import MODELS, spec_of as _spec4
from hls import estimate as E
from hls import folding as F
from hls import parallel
from hls.cycles import measure
from contract import zoo
from contract.intmodel import random_model
from contract.spec import CNNSpec

# FINN's CNV-W1A1 on this part (XC7Z020, PYNQ-Z1 build): the reference point
# issue 16 names for a streaming dataflow design.
FINN_CNV_W1A1_IMG_S = 3020
# Issue 16's budget for its goals: LUT at most 70 %, BRAM at most 60 %, DSP at most 220.
GOAL_BUDGET = {"bram18": 0.6, "lut": 0.7, "dsp": 1.0, "ff": 1.0}
GOALS = {"wmcnn": 10_000, "vgg_s": 3_000}
# The previous templates (layers one after another, conv MAC loops entered
# per pixel and output group), as this bench measured them at commit a8a902d
# with the folding picked then: maps/s at 100 MHz, C-sim = estimate.
BEFORE = {("wmcnn", 8): 1135, ("wmcnn", 4): 1135, ("wmcnn", 2): 1124, ("vgg_s", 4): 212, ("vgg_s", 2): 211,
          ("vgg_s", 8): 213, ("mobilenet_s", 8): 401, ("mobilenet_s", 4): 399, ("mobilenet_s", 2): 396,
          ("alexnet_s", 8): 177, ("alexnet_s", 4): 177, ("alexnet_s", 2): 176}


def spec_of(model: str, w: int, a: int):
    if model == "wmcnn":
        return CNNSpec.uniform(w, a)
    return zoo.ZooSpec(model, w_bits=w, a_bits=a)


def run(bits: list[int], work: Path, target: float | None = None) -> list[dict]:
    rows = []
    jobs = [(m, b) for m in MODELS for b in bits]
    folds = {}
    for model, b in tqdm(jobs, desc="cycle-accounting C-sim"):
        if model not in folds:
            folds[model] = F.default_parallelism(_spec4(model, 4).layers(), target, GOAL_BUDGET)
        par = folds[model]
        spec = spec_of(model, b, b)
        try:
            for l in spec.layers():
                parallel.check(l, par[l["name"]]["pe"], par[l["name"]]["simd"])
        except ValueError as e:  # the W4A4 folding cannot be built at this width
            rows.append({"model": model, "bits": f"W{b}A{b}", "not_built": str(e), "parallel": par})
            continue
        d = work / f"{model}_{b}"
        random_model(spec, seed=3).save(d / "export")
        (d / "hls").mkdir(parents=True, exist_ok=True)
        parallel.save(d / "hls" / "parallel.json", par)
        rep = measure(d / "export", d / "hls", n=1)
        est = E.estimate(spec.layers(), par)
        s = E.summary(est, rep)
        rows.append({"model": model, "bits": f"W{b}A{b}", "csim_cycles": rep["cycles_per_inference"],
                     "est_cycles": est["cycles"], "gap": s["csim_gap"],
                     "max_layer_gap": max(abs(g) for g in s["csim_layer_gap"].values()),
                     "slowest_stage": rep["slowest_stage"], "latency_cycles": rep["latency_cycles"],
                     "latency_us": rep["message_cycles"] / est["f_clk_hz"] * 1e6,
                     "csim_maps_per_s": est["f_clk_hz"] / rep["cycles_per_inference"],
                     "est_maps_per_s": est["maps_per_s"], "before_maps_per_s": BEFORE.get((model, b)),
                     "goal_maps_per_s": GOALS.get(model) if b == 4 else None,
                     "finn_formula_maps_per_s": est["ideal_maps_per_s"],
                     "lut": s["lut"], "ff": s["ff"], "bram36": s["bram36"], "dsp": s["dsp"],
                     "utilization": est["utilization"], "fits": E.fits(est, GOAL_BUDGET),
                     "bit_exact": rep["bit_exact"], "violations": rep["violations"],
                     "fifo_errors": rep["fifo_errors"], "parallel": par})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | bits | interval, C-sim (cycles) | estimate | gap | maps/s | goal | before | "
             "latency (µs) | LUT | BRAM36 | DSP | fits | port over-subscriptions, FIFO errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        if "not_built" in r:
            lines.append(f"| {r['model']} | {r['bits']} | not built: {r['not_built']} |" + " |" * 11)
            continue
        goal = f"{r['goal_maps_per_s']:,}" if r["goal_maps_per_s"] else ""
        before = f"{r['before_maps_per_s']:,}" if r["before_maps_per_s"] else ""
        u = r["utilization"]
        lines.append(f"| {r['model']} | {r['bits']} | {r['csim_cycles']:,} ({r['slowest_stage']}) | "
                     f"{r['est_cycles']:,} | {r['gap']:+.1%} | {r['csim_maps_per_s']:,.0f} | {goal} | {before} | "
                     f"{r['latency_us']:,.0f} | {r['lut']:,} ({u['lut']:.0%}) | {r['bram36']:g} ({u['bram18']:.0%}) | "
                     f"{r['dsp']} | {'yes' if r['fits'] else 'no'} | {len(r['violations'])}, {len(r['fifo_errors'])} |")
    lines.append(f"\nAnchor: FINN's CNV-W1A1 streams {FINN_CNV_W1A1_IMG_S:,} img/s on the XC7Z020. "
                 "All figures above are modelled at 100 MHz, not synthesized.")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "not_built" not in r]
    labels = [f"{r['model']}\n{r['bits']}" for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.7), 4))
    ax.bar([i - 0.2 for i in x], [r["csim_maps_per_s"] for r in rows], 0.4,
           label="DATAFLOW core, cycle-accounting C-sim")
    ax.bar([i + 0.2 for i in x], [r["before_maps_per_s"] or 0 for r in rows], 0.4,
           label="previous templates (layers in sequence)")
    for i, r in enumerate(rows):
        if r["goal_maps_per_s"]:
            ax.plot([i - 0.45, i + 0.45], [r["goal_maps_per_s"]] * 2, color="red", lw=1.2)
    ax.axhline(FINN_CNV_W1A1_IMG_S, color="grey", ls="--", lw=0.8, label="FINN CNV-W1A1 on XC7Z020")
    ax.set_yscale("log")
    ax.set_ylabel("maps/s at 100 MHz (modelled)")
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--bits", default="8,4,2", help="weight = activation widths, comma separated")
    args = ap.parse_args(argv)
    bits = [int(b) for b in args.bits.split(",")]
    with tempfile.TemporaryDirectory(prefix="wq_cycles_") as tmp:
        rows = run(bits, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows)
    print(md)
    (args.out / "hls_cycles.json").write_text(json.dumps(rows, indent=1))
    (args.out / "hls_cycles.md").write_text(md + "\n")
    plot(rows, args.out / "hls_cycles.png")
    bad = [r for r in rows if "not_built" not in r and (not r["bit_exact"] or r["violations"] or r["fifo_errors"])]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
