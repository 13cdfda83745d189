"""Resource and throughput estimate of the generated core, before any HLS run.

    python -m hls.estimate --model build/X/export [--parallel build/X/hls/parallel.json]

Inputs: the layer graph (``contract.graph``) and the per-layer folding
(``hls.parallel``: ``pe`` output channels and ``simd`` fan-in elements a
cycle). Every number below is a formula of those; the constants are named.
The device is the XC7Z020: 53,200 LUT, 106,400 FF, 280 BRAM18 (140 BRAM36),
220 DSP48E1 (contract/board.toml [device]); the clock is its FCLK0 (100 MHz).

Memories (one per array of the generated C++; no sharing between layers), each
costed by ``hls.cost.memory`` (RAMB18E1 shapes, or LUTRAM when small):

- Weights: ``pe`` banks (one per PE), each ``simd * w_bits`` wide and
  ``n_weights / (pe * simd)`` deep, as hls/templates/wq_loader.h lays them.
- Biases: ``pe * 32`` wide, ``out_c / pe`` deep.
- Thresholds (``act`` "thresholds" layers, FINN MultiThreshold):
  ``pe * n_thr`` banks (one a comparator, wq_loader.h), each 32 bits wide and
  ``out_c / pe`` deep, ``n_thr = 2**out_bits - 1``.
- Activations: every layer's output is one buffer, ``lanes * out_bits`` wide
  with ``lanes = max(pe, simd of its consumer)`` and
  ``out_h * out_w * out_c / lanes`` deep. The image buffer is
  ``max(4, simd of the first layer) * in_bits`` bits wide (4 codes a stream
  word; in_bits is 8 but for an imported graph).
  The INFER_BATCH result buffer is 32 bits wide and ``max_batch *
  record_words`` deep (``hls.batch``; 1,024 x 11 words, 22 BRAM18, for the
  wafer-map CNN).

Arithmetic of a conv2d / dense layer (``lanes = pe * simd`` multipliers):

- A multiplier is one DSP48E1 when ``w_bits * in_bits >= DSP_MIN_PRODUCT``
  (48: 8x6 and wider; ``hls.cost.uses_dsp``); else it is LUT logic of
  ``w_bits * in_bits`` LUTs (one LUT6 per partial-product bit, the usual
  soft-multiplier cost). A
  1-bit (bipolar) weight makes the product a conditional negation of the
  code, ``in_bits`` LUTs: one LUT a lane at W1A1, where the adder tree of
  2-bit products is the popcount of FINN's XNOR-popcount MAC.
- Adder tree: ``pe * (simd - 1)`` adders of ``w_bits + in_bits +
  ceil(log2 simd)`` bits, one LUT (carry chain) and one FF a bit. With 1-bit
  weights the ``simd`` products (``in_bits + 1`` bits each) are summed like a
  popcount, by a compressor tree of about one LUT and one FF per input bit:
  ``pe * simd * (in_bits + 1)`` (0 at simd 1).
- Accumulator: ``pe`` adders and registers of ``acc_bits``, the signed width
  holding ``fan_in * (2**in_bits - 1) * 2**(w_bits - 1) + 2**31`` (int32 bias).
- Requantization (shift, round half even, clamp), one a PE, on ``acc_bits``
  (wq_requant.h ``requant_w``, the run-time shift clamped to
  ``requant_range``): ``requant_lut``, its barrel shifters' stages times
  their widths plus rounding, overflow test and clamp, the shift's clamp and
  decoders once a layer; the logits layer has none. A thresholds layer has instead
  ``pe * n_thr`` comparators of ``acc_bits`` against an int32 threshold,
  ``ceil(acc_bits / 2)`` LUTs each (carry-chain compare, two bits a LUT6),
  and a counter of the ``n_thr`` results a PE (``n_thr`` LUTs), plus
  ``out_bits`` output FFs a PE.
- Pipeline FFs: the ``simd * in_bits`` input register, the ``lanes * w_bits``
  weight register and, for LUT multipliers, the ``lanes * (w_bits + in_bits)``
  product registers (a DSP keeps its product in its own MREG).
- Control (loop counters, address generators): CTRL_LUT and CTRL_FF a layer.
- The weight loader of a conv2d / dense layer (``loader_logic``): a buffer
  of ``simd * w_bits + 32`` FFs and the barrel shifter that inserts each blob
  word at its offset, ``(simd * w_bits + 32) * ceil(ceil(log2(simd *
  w_bits)) / 2)`` LUTs.
- Line buffers of a conv2d / depthwise layer (wq_swg.h ``lb_writer``):
  ``line_rows = kernel + stride`` rows of ``in_w * in_c`` codes (the next
  output row's rows load while the current one computes), each row split
  cyclically into ``line_banks`` banks (as the template partitions them), so
  ``line_rows * line_banks`` memories ``in_bits`` wide and ``ceil(in_w * in_c
  / line_banks)`` deep; every lane (``simd``, depthwise ``pe * simd``)
  selects its code among them, a mux of ``in_bits * ceil(line_rows *
  line_banks / 4)`` LUTs (one LUT6 a 4:1 bit; ``line_rows`` alone where a
  lane's bank is fixed).

Layers without weights (pe lanes): maxpool ``pe * out_bits * 2`` LUT and FF
(a comparator and the running max) plus its partial maxima, ``ceil(pool /
stride)`` rows of ``pe`` banks for a pixel's channels (``hacc``, ``in_c / pe``
deep) and for an output row's (``vbuf``, ``out_w * in_c / pe`` deep); gap ``pe`` accumulators of
``gap_sum_bits`` plus a requant of them; add two aligning requants (of
``in_bits + 1``-bit codes), an adder and a requant a lane; quant one requant;
upsample ``pe * out_bits``.

Cycles come from ``hls.cycle_model``: the loops of hls/templates as written,
each pipelined loop at the II its memory ports allow, which the
cycle-accounting C-sim (``hls.cycles``, ``make csim``) measures and
tests/test_hls_cycles.py holds the two to. They are modelled, not
synthesized. Inference is one DATAFLOW region (hls/gen_top.py): ``cycles``
is its interval, the slowest stage (source, a layer, a dup2 copy, sink),
and maps/s = f_clk / cycles for a batch in steady state;
``latency_cycles`` is one image through every stage and ``message_cycles``
one whole INFER (RxWords and the reply too), ``latency_us`` its time.

Activation channels are ``hls.cost.channels``: each cyclic bank its own memory.

``cycles_ideal`` keeps FINN's formula for each layer, what a flattened II=1
pipeline would take, for comparison (the conv and dense layers come within
1.15x of it):

- conv2d / dense: ``out_h * out_w * fold`` with
  ``fold = (out_c / pe) * (fan_in / simd)`` (hls/parallel.py), plus the
  pipeline depth ``PIPE_DEPTH + ceil(log2 simd)``;
- maxpool ``out_h * out_w * pool**2 * c / pe``, gap ``in_h * in_w * c / pe``,
  add ``2 * h * w * c / pe``, quant and upsample ``out_h * out_w * c / pe``,
  plus PIPE_DEPTH each.

The folding itself is ``hls.folding``'s.

Fixed logic, outside the layers:

- The core's message FSM, checksum, blob loader and AXI-Lite control:
  CORE_LUT / CORE_FF, 1.5x our hand-written RTL glue (zybo_z7/rtl, yosys 0.23
  synth_xilinx: wq_glue_top 805 LUT, 421 FF), since HLS control is larger.
- The platform around the core (AXI DMA with SG, the two 1,024-word
  axis_data_fifos, two SmartConnects, the glue): PLATFORM, order-of-magnitude
  figures from AMD's product guides; each FIFO is 2 BRAM18 (1,024 x 33 bits).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from hls import batch, cycle_model, parallel
from hls.cost import (acc_bits, channel_codes, channel_memory, channels, gap_sum_bits,
                      line_buffers, loader_logic, memory, requant_lut, uses_dsp)
from protocol import stream as S
from contract.blob import n_weights
from contract import board
from contract.graph import INPUT, n_thresholds

DEVICE = board.load().device   # XC7Z020 (DS190), contract/board.toml [device]
RESOURCES = ("bram18", "dsp", "lut", "ff")
CTRL_LUT, CTRL_FF = 120, 100
PIPE_DEPTH = 4
CORE_CYCLES = 16
GLUE_LUT, GLUE_FF = 805, 421                 # zybo_z7/rtl/synth.py on wq_glue_top
CORE_LUT, CORE_FF = round(1.5 * GLUE_LUT), round(1.5 * GLUE_FF)
PLATFORM = {"bram18": 2 * 2 + 2, "dsp": 0, "lut": 2_500 + 2 * 1_200 + GLUE_LUT,
            "ff": 3_500 + 2 * 1_600 + GLUE_FF}  # DMA(+2 BRAM18) + SmartConnects + glue; FIFOs 4 BRAM18


class DoesNotFit(ValueError):
    """The design needs more of a resource than the device (or the budget) has."""


def clock_hz() -> int:
    return board.load().fclk0_hz


def layer_estimate(layer: dict, pe: int, simd: int, out: dict | None = None) -> dict:
    """One layer's resources and cycles; ``out``: its output channel (``channels``;
    None: one ping-pong pair of one bank)."""
    kind, ib, ob = layer["type"], layer["in_bits"], layer["out_bits"]
    pix = layer["out_h"] * layer["out_w"]
    c = parallel.out_channels(layer)
    r = {"name": layer["name"], "type": kind, "pe": pe, "simd": simd,
         "lut": CTRL_LUT, "ff": CTRL_FF, "dsp": 0, "bram18_weights": 0, "bram18_acts": 0}
    if kind in ("conv2d", "dense"):
        wb, fi, lanes = layer["w_bits"], parallel.fan_in(layer), pe * simd
        wbr, wlut = memory(simd * wb, n_weights(layer) // lanes)
        bbr, blut = memory(pe * 32, c // pe)
        n_thr = n_thresholds(layer)
        tbr, tlut = memory(32, c // pe) if n_thr else (0, 0)
        r["bram18_weights"] = pe * wbr + bbr + pe * n_thr * tbr
        r["lut"] += pe * wlut + blut + pe * n_thr * tlut
        prod = wb + ib
        if uses_dsp(wb, ib):
            r["dsp"] = lanes
        else:
            r["lut"] += lanes * wb * ib
            r["ff"] += lanes * prod
        if wb == 1:
            tree = pe * simd * (ib + 1) if simd > 1 else 0
        else:
            tree = pe * (simd - 1) * (prod + math.ceil(math.log2(simd)))
        acc = acc_bits(fi, ib, wb)
        if n_thr:
            act = pe * (n_thr * math.ceil(acc / 2) + n_thr)
            r["ff"] += pe * ob
        else:
            act = requant_lut(acc, ob, pe) if layer["requant"] else 0
        r["lut"] += tree + pe * acc + act
        if kind == "conv2d":
            lbr, llut = line_buffers(layer, pe, simd)
            r["bram18_acts"] += lbr
            r["lut"] += llut
        r["ff"] += tree + pe * acc + simd * ib + lanes * wb
        llut, lff = loader_logic(simd * wb)
        r["lut"] += llut
        r["ff"] += lff
        r["fold"] = (c // pe) * (fi // simd)
        r["cycles_ideal"] = pix * r["fold"] + PIPE_DEPTH + math.ceil(math.log2(simd))
    else:
        reads = {"maxpool": layer.get("pool", 1) ** 2, "add": 2,
                 "gap": layer["in_h"] * layer["in_w"]}.get(kind, 1)
        if kind == "maxpool":
            r["lut"] += pe * ob * 2
            r["ff"] += pe * ob * 2
            # wq_maxpool.h's partial maxima: hacc and vbuf, ceil(pool / stride) rows
            # each, every row pe banks of out_bits-wide codes
            k = math.ceil(layer["pool"] / layer["stride"])
            hbr, hlut = memory(ob, c // pe)
            vbr, vlut = memory(ob, math.ceil(layer["out_w"] * c / pe))
            r["bram18_acts"] += k * pe * (hbr + vbr)
            r["lut"] += k * pe * (hlut + vlut)
        elif kind == "gap":
            width = gap_sum_bits(layer)
            r["lut"] += pe * width + requant_lut(width, ob, pe)
            r["ff"] += pe * width
        elif kind == "add":
            width = layer["align_bits"] + 1
            # the inputs are codes of up to in_bits (+1 signed); the sum of two aligned values
            r["lut"] += (2 * requant_lut(ib + 1, layer["align_bits"], pe) + pe * width
                         + requant_lut(width, ob, pe))
            r["ff"] += pe * 3 * width
        elif kind == "quant":
            r["lut"] += requant_lut(ib + 1, ob, pe)
            r["ff"] += pe * ob
        else:
            r["lut"] += pe * ob
        r["fold"] = c // pe
        r["cycles_ideal"] = pix * reads * r["fold"] + PIPE_DEPTH
    if layer["type"] == "dense" and not layer["requant"]:
        r["lut"] += 32 * c                    # int32 logits: registers, not a buffer
        r["ff"] += 32 * c
    else:
        abr, alut = channel_memory([layer], out or {"of": layer["name"], "factor": 1, "depth": 2})
        r["bram18_acts"] += abr
        r["lut"] += alut
    r["bram18"] = r["bram18_weights"] + r["bram18_acts"]
    m = cycle_model.layer_cycles(layer, pe, simd)
    r["cycles"], r["ii"] = m["cycles"], m["ii"]
    return r


def estimate(layers: list[dict], par: dict | None = None, f_clk: int | None = None,
             features: bool = False) -> dict:
    """Per-layer and total estimate; ``par`` is ``hls.parallel.load``'s dict (default pe = simd = 1);
    ``features``: the core also replies the feature map (hls.generate)."""
    par = par or {l["name"]: {"pe": 1, "simd": 1} for l in layers}
    f_clk = f_clk or clock_hz()
    rows = []
    chans = channels(layers, par, features)
    own = {c["of"]: c for c in chans if c["array"] == ("img" if c["of"] == INPUT else f"{c['of']}_out")}
    for l in layers:
        p = par[l["name"]]
        parallel.check(l, p["pe"], p["simd"])
        rows.append(layer_estimate(l, p["pe"], p["simd"], own[l["name"]]))
    first = layers[0]
    n_pix = first["in_h"] * first["in_w"] * first["in_c"]
    # the region's image channel, and the core's INFER buffer (4 banks, one copy)
    ibr, ilut = channel_memory(layers, own[INPUT])
    cbr, clut = memory(first["in_bits"], math.ceil(n_pix / 4))
    ibr, ilut = ibr + 4 * cbr, ilut + 4 * clut
    # dup2 stages: an array that k stages read is copied k - 1 times, two arrays each
    for name in [INPUT] + [l["name"] for l in layers]:
        copies = [c for c in chans if c["of"] == name and c is not own[name]]
        buf = "img" if name == INPUT else f"{name}_out"
        for j in range(len(copies) // 2):
            mem = [channel_memory(layers, c) for c in copies[2 * j:2 * j + 2]]
            n, f = channel_codes(layers, name)[0], own[name]["factor"]
            rows.append({"name": f"{buf}_dup{j}", "type": "dup2", "bram18": sum(m[0] for m in mem),
                         "bram18_acts": sum(m[0] for m in mem), "bram18_weights": 0, "dsp": 0,
                         "lut": CTRL_LUT + sum(m[1] for m in mem), "ff": CTRL_FF,
                         "cycles": cycle_model.dup_cycles(n, f), "ii": 1,
                         "cycles_ideal": math.ceil(n / f) + PIPE_DEPTH})
    fw = fe = 0
    if features:
        from hls.gen_config import feature_layer

        feat = feature_layer(layers)
        fe = feat["out_h"] * feat["out_w"] * feat["out_c"]
        fw = S.infer_words(fe)
    n_classes = parallel.out_channels(layers[-1])
    stream = S.infer_words(n_pix) + S.HEADER_WORDS + S.TRAILER_WORDS \
        + S.HEADER_WORDS + 1 + n_classes + S.TRAILER_WORDS + CORE_CYCLES
    cm = cycle_model.core_cycles(layers, par, n_pix, n_classes, fw)
    # INFER_BATCH's result buffer: max_batch records of 32-bit words (hls/batch.py)
    rec = S.record_words(n_classes, fw)
    rbr, rlut = memory(32, batch.max_batch(n_classes, fw, n_pix) * rec)
    core = {"name": "core", "type": "fixed", "bram18": ibr + rbr, "bram18_acts": ibr + rbr,
            "bram18_weights": 0, "bram18_results": rbr, "dsp": 0, "lut": CORE_LUT + ilut + rlut, "ff": CORE_FF,
            "cycles": cm["cycles"], "ii": cm["rx_ii"], "cycles_ideal": stream,
            "source": cm["source"], "sink": cm["sink"], "message": cm["core"] + cm["reply"]}
    total = {k: sum(r[k] for r in rows) + core[k] for k in (*RESOURCES, "cycles", "cycles_ideal")}
    with_platform = {k: total[k] + PLATFORM[k] for k in RESOURCES}
    # DATAFLOW: the interval between images is the slowest stage (source, a
    # layer, a dup2, sink); one image's latency is the message plus every stage.
    stages = [("source", cm["source"])] + [(r["name"], r["cycles"]) for r in rows] + [("sink", cm["sink"])]
    slowest, cycles = max(stages, key=lambda x: x[1])
    latency = sum(c for _, c in stages)
    message = latency + cm["core"] + cm["reply"]
    ideal = max(r["cycles_ideal"] for r in rows)
    return {"layers": rows, "core": core, "platform": dict(PLATFORM), "total": total,
            "with_platform": with_platform, "device": dict(DEVICE), "f_clk_hz": f_clk,
            "cycles": cycles, "slowest_stage": slowest, "latency_cycles": latency,
            "message_cycles": message, "latency_us": message / f_clk * 1e6, "maps_per_s": f_clk / cycles,
            "cycles_ideal": ideal, "ideal_maps_per_s": f_clk / ideal,
            "bram36": with_platform["bram18"] / 2,
            "utilization": {k: with_platform[k] / DEVICE[k] for k in RESOURCES}}


_LABEL = {"bram18": "BRAM36", "dsp": "DSP48E1", "lut": "LUT", "ff": "FF"}


def check_fits(est: dict, budget: dict | None = None) -> None:
    """Raise DoesNotFit naming the largest layer and part of a resource that is over.

    ``budget``: fraction of the device allowed per resource (default 1.0)."""
    for res in RESOURCES:
        limit = DEVICE[res] * (budget or {}).get(res, 1.0)
        need = est["with_platform"][res]
        if need <= limit:
            continue
        rows = est["layers"] + [est["core"]]
        if res == "bram18":
            part, row = max(((p, r) for r in rows for p in ("bram18_weights", "bram18_acts")),
                            key=lambda pr: pr[1][pr[0]])
            what = "weights" if part == "bram18_weights" else "activation buffers"
            raise DoesNotFit(f"layer {row['name']}: {what} need {row[part] / 2:g} BRAM36 and the "
                             f"whole design {need / 2:g} BRAM36 of {limit / 2:g}.")
        row = max(rows, key=lambda r: r[res])
        raise DoesNotFit(f"layer {row['name']}: needs {row[res]:,} {_LABEL[res]} and the whole "
                         f"design {need:,} {_LABEL[res]} of {limit:,.0f}.")


def fits(est: dict, budget: dict | None = None) -> bool:
    try:
        check_fits(est, budget)
    except DoesNotFit:
        return False
    return True


def table(est: dict) -> str:
    lines = [f"{'layer':<14}{'pe':>4}{'simd':>6}{'BRAM18':>8}{'DSP':>6}{'LUT':>8}{'FF':>8}{'II':>4}"
             f"{'cycles':>10}{'ideal':>9}"]
    for r in est["layers"] + [est["core"]]:
        lines.append(f"{r['name']:<14}{r.get('pe', ''):>4}{r.get('simd', ''):>6}{r['bram18']:>8}"
                     f"{r['dsp']:>6}{r['lut']:>8}{r['ff']:>8}{r['ii']:>4}{r['cycles']:>10}{r['cycles_ideal']:>9}")
    wp, u = est["with_platform"], est["utilization"]
    lines.append(f"{'+ platform':<24}{wp['bram18']:>8}{wp['dsp']:>6}{wp['lut']:>8}{wp['ff']:>8}")
    lines.append(f"utilization: BRAM {u['bram18']:.0%} ({est['bram36']:g} BRAM36), DSP {u['dsp']:.0%}, "
                 f"LUT {u['lut']:.0%}, FF {u['ff']:.0%}; {est['cycles']:,} cycles a map (DATAFLOW interval, "
                 f"stage {est['slowest_stage']}), {est['maps_per_s']:,.0f} maps/s modelled (not synthesized), "
                 f"{est['latency_us']:.1f} us one INFER; "
                 f"{est['ideal_maps_per_s']:,.0f} maps/s by FINN's II=1 formula")
    return "\n".join(lines)


def summary(est: dict, csim: dict | None = None) -> dict:
    """The headline figures of ``make estimate`` (estimate.json's top-level keys);
    ``csim``: hls.cycles' report, whose measured cycles are set against the model."""
    wp = est["with_platform"]
    out = {"cycles_per_inference": est["cycles"], "maps_per_s": est["maps_per_s"],
           "lut": wp["lut"], "ff": wp["ff"], "bram36": est["bram36"], "dsp": wp["dsp"],
           "fits": fits(est), "basis": "modelled from the templates' loops and memory ports "
                                      "(hls.cycle_model), not synthesized",
           "ideal_cycles": est["cycles_ideal"], "ideal_maps_per_s": est["ideal_maps_per_s"]}
    if csim is not None:
        m = csim["cycles_per_inference"]
        out["csim_cycles_per_inference"] = m
        out["csim_gap"] = (est["cycles"] - m) / m
        meas = {l["name"]: l["cycles"] for l in csim["layers"]}
        out["csim_layer_gap"] = {r["name"]: (r["cycles"] - meas[r["name"]]) / meas[r["name"]]
                                 for r in est["layers"] if meas.get(r["name"])}
    return out


def main(argv=None) -> int:
    from contract.intmodel import IntModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="export folder (model.json)")
    ap.add_argument("--parallel", default=None,
                    help="parallel.json; if it does not exist, default_parallelism is written there "
                         "(the generator reads the same file, so core and estimate agree)")
    ap.add_argument("--json", default=None, help="write the estimate here")
    ap.add_argument("--cycles", default=None,
                    help="cycles.json of hls.cycles (make csim): its measured cycles go next to the model's")
    args = ap.parse_args(argv)
    layers = IntModel.load(args.model).layers
    from hls.folding import default_parallelism, ensure_parallel   # (hls.folding imports this module)

    par = ensure_parallel(layers, args.parallel) if args.parallel else default_parallelism(layers)
    est = estimate(layers, par)
    print(table(est))
    csim = json.loads(Path(args.cycles).read_text()) if args.cycles and Path(args.cycles).is_file() else None
    if args.json:
        Path(args.json).write_text(json.dumps({**summary(est, csim), "parallel": par, **est}, indent=1))
    try:
        check_fits(est)
    except DoesNotFit as e:
        print(f"hls.estimate: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
