"""Our estimate of a CNV-W1A1-shaped core against FINN's published anchor.

    python -m bench.finn_anchor [--out build/bench]

The model is BNN-PYNQ's CNV topology as an imported graph (GraphSpec): input
32x32x3 at 8 bits; conv 64, 64, pool, 128, 128, pool, 256, 256 (3x3, no
padding), dense 512, 512, 10; W1A1, a MultiThreshold after every layer but
the last. ``hls.folding.default_parallelism`` folds it toward the anchor's
rate under two budgets (the generator's default and the bench's 90 % one),
and ``hls.estimate`` reports resources and speed on the XC7Z020.

The anchor: FINN's CNV-W1A1 at 3,020 images/s on this part (BNN-PYNQ / FINN
paper figures), a synthesized, measured dataflow design. Ours is modelled,
not synthesized: ``maps_per_s`` is the templates as written (layers one after
another, hls.cycle_model), ``ideal_maps_per_s`` FINN's own II=1 formula on
the same folding. The ratios are printed as they come out; nothing here is
tuned to meet the anchor. Writes finn_anchor.json into --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from contract.graph import GraphBuilder
from contract.graphspec import GraphSpec
from hls import estimate as E
from hls import folding as F

FINN_CNV_W1A1_FPS = 3020          # BNN-PYNQ CNV-W1A1 on the XC7Z020 (FINN paper figures)
BUDGETS = {"default": None,       # hls.folding.DEFAULT_BUDGET, what make hls-src uses
           "bench": {"bram18": 0.9, "dsp": 0.9, "lut": 0.8, "ff": 0.8}}


def cnv_w1a1() -> GraphSpec:
    g = GraphBuilder(32, 3, 8)
    for i, (c, pool) in enumerate(((64, False), (64, True), (128, False), (128, True),
                                   (256, False), (256, False))):
        g.conv(f"conv{i}", c, 3, pad=0, w_bits=1, a_bits=1, thresholds=True)
        if pool:
            g.maxpool(f"pool{i}", 2)
    g.dense("fc0", 512, w_bits=1, a_bits=1, thresholds=True)
    g.dense("fc1", 512, w_bits=1, a_bits=1, thresholds=True)
    g.dense("fc2", 10, w_bits=1, logits=True)
    return GraphSpec("cnv_1w1a", 32, 32, 3, tuple(f"class{i}" for i in range(10)), tuple(g.layers),
                     in_bits=8, source={"shape of": "brevitas_examples.bnn_pynq cnv_1w1a"})


def run() -> list[dict]:
    layers = cnv_w1a1().layers()
    rows = []
    for name, budget in BUDGETS.items():
        par = F.default_parallelism(layers, FINN_CNV_W1A1_FPS, budget)
        est = E.estimate(layers, par)
        wp = est["with_platform"]
        rows.append({"budget": name, "fits": E.fits(est), "lut": wp["lut"], "ff": wp["ff"],
                     "bram36": est["bram36"], "dsp": wp["dsp"], "utilization": est["utilization"],
                     "cycles": est["cycles"], "maps_per_s": est["maps_per_s"],
                     "ideal_maps_per_s": est["ideal_maps_per_s"],
                     "ratio_to_finn": est["maps_per_s"] / FINN_CNV_W1A1_FPS,
                     "ideal_ratio_to_finn": est["ideal_maps_per_s"] / FINN_CNV_W1A1_FPS,
                     "slowest_layer": max(est["layers"], key=lambda r: r["cycles"])["name"],
                     "parallel": par})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    args = ap.parse_args(argv)
    rows = run()
    print(f"CNV-W1A1 shape on the XC7Z020 at {E.clock_hz() / 1e6:g} MHz; FINN anchor "
          f"{FINN_CNV_W1A1_FPS:,} img/s (synthesized); ours modelled, not synthesized")
    print(f"{'budget':<9}{'LUT':>8}{'FF':>8}{'BRAM36':>8}{'DSP':>5}{'img/s':>9}{'x FINN':>8}"
          f"{'ideal':>9}{'x FINN':>8}  slowest")
    for r in rows:
        print(f"{r['budget']:<9}{r['lut']:>8}{r['ff']:>8}{r['bram36']:>8g}{r['dsp']:>5}"
              f"{r['maps_per_s']:>9.0f}{r['ratio_to_finn']:>8.2f}{r['ideal_maps_per_s']:>9.0f}"
              f"{r['ideal_ratio_to_finn']:>8.2f}  {r['slowest_layer']}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "finn_anchor.json"
    path.write_text(json.dumps({"anchor": {"model": "CNV-W1A1", "img_per_s": FINN_CNV_W1A1_FPS,
                                           "part": "XC7Z020", "source": "BNN-PYNQ / FINN paper figures"},
                                "rows": rows}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
