"""What one piece of the generated core costs, in BRAM18, LUT and FF.

A memory, an accumulator's width, a requantizer, a weight loader, a
multiplier, a conv layer's line buffers, a DATAFLOW channel: the formulas
``hls.estimate`` adds up layer by layer. The generated C++ (hls/gen_config.py)
takes its accumulator widths, requant shift range and DSP rule from here too,
so the core and the estimate follow one rule.

A memory ``width`` bits wide and ``depth`` words deep (one per array of the
generated C++; no sharing between layers):

- takes, in BRAM18, ``min over shapes (w, d) of ceil(width / w) * ceil(depth
  / d)``, shapes (1, 16K) (2, 8K) (4, 4K) (9, 2K) (18, 1K) (36, 512): the
  RAMB18E1 aspect ratios, 36 wide in simple dual port (the loader writes one
  port, the layer reads the other). BRAM36 = BRAM18 / 2;
- goes to distributed RAM instead at depth <= LUTRAM_DEPTH (64) or at most
  LUTRAM_BITS (1,024) bits: ``width * ceil(depth / 64)`` LUTs (one RAM64X1D
  per bit), as Vivado does for small arrays.

Activation channels (``channels``, as hls/gen_top.py ``region`` declares
them): each cyclic bank is its own memory; a FIFO channel holds
``fifo_depth`` codes a bank, a ping-pong channel two (or ``depth``) whole
buffers.
"""
from __future__ import annotations

import math

from hls import parallel
from contract.graph import INPUT

BRAM18_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
LUTRAM_DEPTH = 64
LUTRAM_BITS = 1024
DSP_MIN_PRODUCT = 48


def memory(width: int, depth: int) -> tuple[int, int]:
    """(BRAM18, LUT) of one ``width`` x ``depth`` memory (see the module doc)."""
    if width <= 0 or depth <= 0:
        return 0, 0
    if depth <= LUTRAM_DEPTH or width * depth <= LUTRAM_BITS:
        return 0, width * math.ceil(depth / LUTRAM_DEPTH)
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in BRAM18_SHAPES), 0


def acc_bits(fan_in: int, in_bits: int, w_bits: int) -> int:
    """Signed width of accum_t (the generated C++, hls/gen_config.py) and of the
    estimate's accumulators: it holds any sum of fan_in products of an input code
    (ap_uint<in_bits>, at most 2**in_bits - 1) and a weight (ap_int<w_bits>, at
    least -2**(w_bits - 1)) plus an int32 bias, and one bit less would not."""
    bound = fan_in * ((1 << in_bits) - 1) * (1 << (w_bits - 1)) + (1 << 31)
    return bound.bit_length() + 1


def _clog2(n: int) -> int:
    return max(0, (n - 1).bit_length())


def requant_range(width: int, out_bits: int) -> tuple[int, int]:
    """(lo, hi): the shifts that can change the requantization of a ``width``-bit
    signed value to ``out_bits`` (wq_requant.h rq_range, which the generated
    configs are checked against): a left shift past ``out_bits + 1`` saturates
    like that one, a right shift past ``width`` gives 0 like that one."""
    return -(out_bits + 1), width


def gap_sum_bits(layer: dict) -> int:
    """Signed width of a GAP layer's per-channel sum (sum_t): in_h * in_w codes."""
    return (layer["in_h"] * layer["in_w"] * (1 << layer["in_bits"])).bit_length() + 1


def requant_lut(width: int, out_bits: int, lanes: int = 1) -> int:
    """LUTs of ``lanes`` wq_requant.h ``requant_w<width, out_bits>`` that share
    one run-time shift (a layer's PEs), one LUT6 a 2:1 mux bit or a 2-bit
    compare / carry-chain bit. Once a layer, since they depend on the shift only:

    - the shift clamped to ``requant_range``: two compares of its 32 bits (16
      LUTs each) and the mux of the ``ceil(log2(hi + 1))``-bit amount;
    - two decoders of the amount, ``w = width + 1`` bits each: the rounding's
      ``half - 1`` mask and the overflow test's mask.

    Each lane:

    - right path on ``w`` bits: the odd bit, a ``w``:1 mux, ``ceil(w / 3)``; the
      rounding adder, ``w``; the barrel shifter, ``ceil(log2(hi + 1))`` stages,
      the stage shifting by 2**k only as wide as the ``out_bits + 2`` kept bits
      plus the shifts still to come, ``min(w, out_bits + 2 + 2**k - 1)``; the
      overflow test, bit tests two a LUT and their OR, ``ceil(w / 2) + ceil(w / 6)``;
    - left path: a pre-clamp to ``out_bits + 3`` bits (two compares of ``width``
      bits), a ``2 * out_bits + 4``-bit shifter of ``ceil(log2(out_bits + 2))`` stages;
    - the clamp of both paths' results and the output select, ``2 * (out_bits +
      2) + (out_bits + 2) + 2 * out_bits``."""
    lo, hi = requant_range(width, out_bits)
    w, kept = width + 1, out_bits + 2
    rst, lst = _clog2(hi + 1), _clog2(-lo + 1)
    shared = 2 * 16 + rst + 2 * w
    right = (math.ceil(w / 3) + w + sum(min(w, kept + (1 << k) - 1) for k in range(rst))
             + math.ceil(w / 2) + math.ceil(w / 6))
    left = 2 * math.ceil(width / 2) + (2 * out_bits + 4) * lst
    clamp = 2 * (out_bits + 2) + kept + 2 * out_bits
    return shared + lanes * (right + left + clamp)


def loader_logic(word_bits: int) -> tuple[int, int]:
    """(LUT, FF) of a weighted layer's loader (wq_loader.h route_weight_word):
    a buffer of ``word_bits + 32`` bits into which each 32-bit blob word is
    shifted at a run-time offset below ``word_bits``, a barrel shifter of
    ``ceil(log2 word_bits)`` stages, two 2:1 stages a LUT6."""
    width = word_bits + 32
    return width * math.ceil(max(1, math.ceil(math.log2(max(word_bits, 2)))) / 2), width


def uses_dsp(w_bits: int, in_bits: int) -> bool:
    """Whether a w_bits x in_bits multiplier is counted as a DSP48E1. The
    generated layer config pins the others to LUTs (mul_fabric, BIND_OP
    impl=fabric), so synthesis builds what this estimate counts."""
    return w_bits * in_bits >= DSP_MIN_PRODUCT


line_banks = parallel.line_banks   # cyclic factor of each line buffer (the generated configs' line_banks)


def line_buffers(layer: dict, pe: int, simd: int) -> tuple[int, int]:
    """(BRAM18, LUT) of a conv layer's line buffers and their lane muxes."""
    f, rows, ib = line_banks(layer, pe, simd), parallel.line_rows(layer), layer["in_bits"]
    bram, lut = memory(ib, math.ceil(layer["in_w"] * layer["in_c"] / f))
    dw = layer["groups"] > 1
    lanes = pe * simd if dw else simd
    # A lane whose bank is fixed (the templates' PACKED / one-column index forms)
    # selects among the line buffers only; otherwise among every bank of them.
    fixed = f == pe if dw else layer["in_c"] % simd == 0
    choices = rows if fixed else rows * f
    return rows * f * bram, rows * f * lut + lanes * ib * math.ceil(choices / 4)


def channels(layers: list[dict], par: dict, features: bool = False) -> list[dict]:
    """The DATAFLOW region's channel arrays as hls/gen_top.py declares them
    (its ``region``, run on the layers' lanes): ``array``, ``of`` (whose
    output it holds), ``factor`` (cyclic banks) and ``depth`` (buffers)."""
    from hls.gen_config import LayerPlan, feature_layer, kind_of, lanes
    from hls.gen_top import region

    plans = []
    for l in layers:
        kind = kind_of(l)
        size = l["out_h"] * l["out_w"] * l["out_c"] if l["type"] != "dense" else l["out_features"]
        p = LayerPlan(l, kind, [], "t", size, par[l["name"]]["pe"], par[l["name"]]["simd"])
        p.in_lanes, p.out_lanes = lanes(p)
        plans.append(p)
    return region(plans, feature_layer(layers) if features else None)[1]


def channel_codes(layers: list[dict], of: str) -> tuple[int, int]:
    """(codes, bits a code) of the array that holds ``of``'s output (INPUT: the image)."""
    if of == INPUT:
        first = layers[0]
        return first["in_h"] * first["in_w"] * first["in_c"], first["in_bits"]
    src = next(l for l in layers if l["name"] == of)
    return src["out_h"] * src["out_w"] * src["out_c"], src["out_bits"]


def channel_memory(layers: list[dict], ch: dict) -> tuple[int, int]:
    """(BRAM18, LUT) of one channel: ``factor`` banks, each its own memory
    (Vivado maps each partition separately), a FIFO of ``fifo_depth`` codes
    or ``depth`` whole buffers (ping-pong)."""
    n, bits = channel_codes(layers, ch["of"])
    if ch.get("fifo_depth"):   # a FIFO a bank (hls.gen_top.fifo_depth)
        br, lut = memory(bits, ch["fifo_depth"])
        return ch["factor"] * br, ch["factor"] * lut
    br, lut = memory(bits, math.ceil(n / ch["factor"]))
    return ch["depth"] * ch["factor"] * br, ch["depth"] * ch["factor"] * lut
