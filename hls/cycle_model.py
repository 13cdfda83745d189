"""Cycles of the generated core as its templates are written, by formula.

The figures mirror, loop by loop, what the cycle-accounting C-sim
(``hls/cycles.py``; model stated in ``hls/cycles/wq_cycles_sim.h``) counts:

- a pipelined loop entered ``entries`` times for ``iters`` iterations in all
  costs ``iters * II + entries * (depth - II)``, with ``II`` the declared 1
  relaxed to ``ceil(distinct addresses of one 2-port bank per iteration / 2)``;
  depth ``PIPE_DEPTH`` (+ ``ceil(log2 simd)`` for a multiply-accumulate loop);
- a loop that is not pipelined costs 1 cycle an iteration plus its straight-line
  accesses, ``ceil(n / 2)`` for n addresses of one bank;
- layers run one after another (no DATAFLOW), so an inference is their sum.

Per iteration, with the layer's ``pe`` and ``simd``:

- conv2d and depthwise: the line buffers (wq_conv2d.h ``lb_fill``) read the
  input array once, one code a cycle (II 1), in one LbFill entry per output
  row that needs new input rows (``line_fill``); ConvSf / DwSf then take the
  window from distinct line-buffer banks at II 1, once per (pixel, output
  group), and each ConvNf iteration reads ``pe`` biases and writes ``pe``
  outputs (a thresholds layer also reads each of its ``pe * n_thr`` threshold
  banks once, which adds no cycle);
- dense: DenseSf reads ``simd`` inputs, once per output group;
- maxpool: one flattened loop (PoolStream) over the input rows and columns
  its windows cover, ``pe`` consecutive codes an iteration, the partial maxima
  in per-window-row/column banks: II 1, one entry;
- gap, add, upsample, quant: one flattened loop each, ``pe`` consecutive codes
  of each array an iteration: II 1, one entry;
- the RX loop: II from the most writes one stream word makes into one memory
  (4 image pixels a word; the loader's slices, simulated word by word).
"""
from __future__ import annotations

import math

from hls import parallel
from protocol import stream as S
from contract.blob import n_weights
from contract.graph import has_section, is_threshold

PIPE_DEPTH = 4   # wq_cycles.h WQ_DEPTH
PORTS = 2        # one BRAM bank


def _ii(distinct: int) -> int:
    return max(1, math.ceil(distinct / PORTS))


def pipelined(iters: int, entries: int, ii: int, depth: int = PIPE_DEPTH) -> int:
    return iters * ii + entries * (max(depth, ii) - ii) if iters else 0


def _seq(iters: int, accesses: int = 0) -> int:
    return iters * (1 + math.ceil(accesses / PORTS))


def line_fill(layer: dict) -> tuple[int, int]:
    """(iterations, entries) of LbFill: input rows load as output rows need them."""
    k, st, p, ih = layer["kernel"], layer["stride"], layer["pad"], layer["in_h"]
    filled = entries = 0
    for oy in range(layer["out_h"]):
        need = min(ih, oy * st + k - p)
        if need > filled:
            entries += 1
            filled = need
    return filled * layer["in_w"] * layer["in_c"], entries


def pool_span(layer: dict, axis: str) -> int:
    """Input rows (axis "h") or columns ("w") a max pool's windows cover:
    the rest is the edge that floor drops (wq_maxpool.h ROWS / COLS)."""
    return (layer[f"out_{axis}"] - 1) * layer["stride"] + layer["pool"]


def layer_cycles(layer: dict, pe: int, simd: int) -> dict:
    """{"cycles", "ii"} of one layer as hls/templates write it."""
    t = layer["type"]
    oh, ow = layer["out_h"], layer["out_w"]
    pix = oh * ow
    c = parallel.out_channels(layer)
    nf = c // pe
    shift_reads = 0
    if t in ("conv2d", "dense"):
        sf = parallel.fan_in(layer) // simd
        depth = PIPE_DEPTH + math.ceil(math.log2(simd)) if simd > 1 else PIPE_DEPTH
        ii = _ii(simd) if t == "dense" else 1
        if t == "dense":
            cyc = pipelined(nf * sf, nf, ii, depth) + _seq(nf, pe)
        else:
            fill, fill_entries = line_fill(layer)
            cyc = (pipelined(fill, fill_entries, 1) + pipelined(pix * nf * sf, pix * nf, ii, depth)
                   + _seq(pix * nf, pe) + _seq(pix) + _seq(oh))
        shift_reads = 0 if is_threshold(layer) else 1     # thresholds layers have no shift word
    elif t == "maxpool":
        # PoolStream: the input rows and columns some window covers, one pixel
        # group of pe codes an iteration, every bank touched once (II 1).
        ii = 1
        cyc = pipelined(pool_span(layer, "h") * pool_span(layer, "w") * nf, 1, ii)
    elif t == "gap":
        ii = 1
        cyc = pipelined(nf * layer["in_h"] * layer["in_w"], 1, ii)
        shift_reads = 1
    elif t in ("add", "quant", "upsample"):
        ii = 1
        cyc = pipelined(pix * nf, 1, ii)
        shift_reads = {"add": 3, "quant": 1}.get(t, 0)
    else:
        raise ValueError(f"layer {layer['name']}: no cycle model for type {t}")
    return {"cycles": cyc + math.ceil(shift_reads / PORTS), "ii": ii}


def loader_writes(layer: dict, pe: int, simd: int) -> int:
    """Most writes one blob word makes into one weight bank (wq_loader.h routing)."""
    if layer["type"] not in ("conv2d", "dense"):
        return 1
    chunk = simd * layer["w_bits"]
    n_chunks = n_weights(layer) // simd
    sf = parallel.fan_in(layer) // simd
    n_words = (n_weights(layer) * layer["w_bits"] + 31) // 32
    nbits = done = worst = 0
    for _ in range(n_words):
        nbits += 32
        banks: dict[int, int] = {}
        while nbits >= chunk and done < n_chunks:
            b = (done // sf) % pe
            banks[b] = banks.get(b, 0) + 1
            nbits -= chunk
            done += 1
        worst = max([worst, *banks.values()])
    return max(worst, 1)


def core_cycles(layers: list[dict], par: dict, n_pixels: int, n_classes: int,
                feature_words: int = 0, feature_elems: int = 0) -> dict:
    """The parts outside the layers: RX loop, logits/argmax head, reply."""
    writes = max([min(4, n_pixels)] + [loader_writes(l, par[l["name"]]["pe"], par[l["name"]]["simd"])
                                       for l in layers if has_section(l)])
    rx_ii = _ii(writes)
    rx = pipelined(S.infer_words(n_pixels) + S.HEADER_WORDS + S.TRAILER_WORDS, 1, rx_ii)
    head = pipelined(n_classes, 1, 1) + pipelined(n_classes - 1, 1, 1) + 1
    if feature_words:
        head += pipelined(feature_words, 1, _ii(min(4, feature_elems)))
    max_reply = max(len(S.QUERY_FIELDS), 1 + n_classes + feature_words, 2)
    reply = pipelined(n_classes, 1, 1) + pipelined(feature_words, 1, 1) + pipelined(max_reply, 1, 1)
    return {"rx": rx, "rx_ii": rx_ii, "head": head, "reply": reply, "cycles": rx + head + reply}
