"""Cycles of the generated core as its templates are written, by formula.

The figures mirror, loop by loop, what the cycle-accounting C-sim
(``hls/cycles.py``; model stated in ``hls/cycles/wq_cycles_sim.h``) counts:

- a pipelined loop entered ``entries`` times for ``iters`` iterations in all
  costs ``iters * II + entries * (depth - II)``, with ``II`` the declared 1
  relaxed to ``ceil(distinct addresses of one 2-port bank per iteration / 2)``;
  depth ``PIPE_DEPTH`` (+ ``ceil(log2 simd)`` for a multiply-accumulate loop);
- a loop that is not pipelined costs 1 cycle an iteration plus its straight-line
  accesses, ``ceil(n / 2)`` for n addresses of one bank;
- the layers are stages of one DATAFLOW region with a source and a sink
  stage (and a dup2 stage for an array two stages read): an image's latency
  is the sum of the stages, the interval between images the slowest stage.

Per iteration, with the layer's ``pe`` and ``simd``:

- conv2d and depthwise: the line buffers (wq_swg.h) read the input array
  once, ``hls.parallel.fill_lanes`` codes a step: the rows output row 0 needs
  in one LbFill entry (II 1) before it, the rest while the rows before compute
  (``line_fill``); each output row is one entry of the shared matrix-vector
  loop (wq_mvau.h ``Mvau``): ``max(out_w * nf * sf, fill steps for the next
  row)`` iterations at II 1 taking the window from
  distinct line-buffer banks, the ``pe`` biases (one bank each) on a group's
  first slice and the ``pe`` outputs (consecutive codes, distinct banks) on its
  last (a thresholds layer also reads each of its ``pe * n_thr`` threshold
  banks once, which adds no cycle); ConvRows / DwRows cost 1 a row;
- dense: one Mvau entry of ``nf * sf`` iterations, ``simd`` consecutive
  inputs each (the input array is partitioned by at least ``simd``);
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


def line_fill(layer: dict, lanes: int = 1) -> tuple[int, list[int]]:
    """LbFill's iterations (the input rows output row 0 needs, before it), and
    for each output row the fill steps that run inside its Mvau loop (the rows
    the next output row needs beyond its own): ``lanes`` codes a step
    (hls.parallel.fill_lanes; wq_swg.h lb_need / lb_ahead)."""
    k, st, p, ih, oh = layer["kernel"], layer["stride"], layer["pad"], layer["in_h"], layer["out_h"]
    steps = layer["in_w"] * layer["in_c"] // lanes     # a row

    def need(oy: int) -> int:
        return min(ih, oy * st + k - p)

    ahead = [(need(oy + 1) - need(oy)) * steps if oy + 1 < oh else 0 for oy in range(oh)]
    return need(0) * steps, ahead


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
        # wq_mvau.h: one Mvau entry per call (a conv's output row, the dense
        # layer), nf * sf iterations a pixel at II 1, the depth of a SIMD-wide MAC
        sf = parallel.fan_in(layer) // simd
        depth = PIPE_DEPTH + math.ceil(math.log2(simd)) if simd > 1 else PIPE_DEPTH
        ii = 1
        if t == "dense":
            cyc = pipelined(nf * sf, 1, ii, depth)
        else:
            first, ahead = line_fill(layer, parallel.fill_lanes(layer, pe, simd))
            mac = ow * nf * sf
            cyc = (pipelined(first, 1, 1) + pipelined(sum(max(mac, a) for a in ahead), oh, ii, depth)
                   + _seq(oh))
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
    # The shift words of the other kinds are read before the DATAFLOW region
    # (hls/gen_top.py _shift_scalars); an add reads its three itself.
    if t != "add":
        shift_reads = 0
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


def rx_words_ii(layers: list[dict], par: dict) -> int:
    """The II RxWords declares (hls/gen_config.py WQ_RX_II): what the weight
    bank that one blob word writes most often allows; the image buffer takes
    a word's 4 codes in 4 banks."""
    writes = max([1] + [loader_writes(l, par[l["name"]]["pe"], par[l["name"]]["simd"])
                        for l in layers if has_section(l)])
    return _ii(writes)


def dup_cycles(n: int, lanes: int) -> int:
    """A dup2 stage (wq_batch.h): ``lanes`` codes a cycle of an ``n``-code array."""
    return pipelined(math.ceil(n / lanes), 1, 1)


def core_cycles(layers: list[dict], par: dict, n_pixels: int, n_classes: int,
                feature_words: int = 0) -> dict:
    """The parts outside the layers, for one INFER: the message around the
    region (RxWords, the shift words read before it, the reply) and the
    region's own source and sink stages."""
    rx_ii = rx_words_ii(layers, par)
    rx = pipelined(S.infer_words(n_pixels) + S.HEADER_WORDS + S.TRAILER_WORDS, 1, rx_ii)
    # the shift words the region's stages take as scalars, read before the loop:
    # one word of each layer's own memory, so one cycle
    shifts = 1 if any(has_section(l) and not is_threshold(l) and l["type"] != "add" for l in layers) else 0
    source = pipelined(S.infer_words(n_pixels), 1, 1)          # ImageCopy, 4 codes a cycle
    rec = 2 + n_classes + feature_words
    sink = pipelined(n_classes, 1, 1) + pipelined(n_classes - 1, 1, 1) + pipelined(rec, 1, 1) + 1
    if feature_words:
        sink += pipelined(feature_words, 1, 1)   # its copy has at least 4 banks (gen_top)
    max_reply = max(len(S.QUERY_FIELDS), 1 + n_classes + feature_words, 2)
    reply = pipelined(rec - 1, 1, 1) + pipelined(max_reply, 1, 1)
    core = rx + shifts
    return {"rx": rx, "rx_ii": rx_ii, "core": core, "source": source, "sink": sink, "reply": reply,
            "cycles": core + source + sink + reply}
