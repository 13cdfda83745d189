"""The layer graph: one list of plain dicts that every stage builds from.

A model family (``contract.spec``, ``contract.zoo``) describes its topology with a
``GraphBuilder``; the result is a list of layers in execution order. The
Brevitas model is instantiated from that list (``quant.model.GraphNet``), the
integer reference executes it (``contract.intmodel``), the blob packs it
(``contract.blob``) and the HLS generator instantiates templates for it.

Tensors are HWC. Every layer has::

    type, name        see below
    inputs            names of the layers it reads ("input" is the image)
    in_h, in_w, in_c  shape of its first input
    out_h, out_w, out_c
    in_bits           bit width of its first input's codes
    out_bits          bit width of its output codes
    relu              output clamped to [0, 2**out_bits - 1] (else signed)
    requant           the layer ends in a requantization shift (in the blob)

Types:

conv2d    kernel, stride, pad, groups (1, or in_c for depthwise), w_bits
dense     in_features (HWC flatten of its input), w_bits; ``requant`` False
          makes it the logits layer (int32 accumulator out)

          ``w_bits`` 1 means bipolar weights, -1 or +1 (BNN-PYNQ's
          binarized layers); 2..8 are two's complement.
          ``act`` "thresholds" (conv2d and dense; the key is absent
          otherwise): the output is not a shift of the accumulator but the
          count of per-channel thresholds it reaches, FINN's MultiThreshold
          ``y = sum_k (acc >= T[c][k])`` with ``2**out_bits - 1`` ascending
          thresholds a channel (``<name>.thr`` int32 [out_c][n]). A batch
          norm followed by a multi-bit quantizer becomes this exactly.
maxpool   pool, stride (no padding; a partial window at the edge is dropped)
gap       sum over H and W, then requantization. Its real value is the sum
          times 2**-sum_shift, sum_shift = round(log2(H*W)): a power-of-two
          stand-in for the mean that keeps the model integer-exact
add       both inputs are first requantized to one shared scale (signed
          ``align_bits``; shifts ``shift_a`` and ``shift_b``), then summed and
          requantized (``shift``); three words in the blob
upsample  nearest neighbour, factor 2
quant     requantization only (aligns a branch's scale before an add)
"""
from __future__ import annotations

import json
import math
import zlib

INPUT = "input"
WEIGHTED = ("conv2d", "dense")


class GraphBuilder:
    """Appends layers and infers shapes; methods return the new layer's name."""

    def __init__(self, in_size: int, in_channels: int, in_bits: int, in_w: int | None = None):
        self.layers: list[dict] = []
        self._shape = {INPUT: (in_size, in_w or in_size, in_channels, in_bits, False)}
        self._last = INPUT

    def _add(self, kind: str, name: str, src: str | None, out_hw, out_c, out_bits, relu,
             requant, extra: dict, inputs=None) -> str:
        src = src or self._last
        if name in self._shape:
            raise ValueError(f"layer name {name!r} is used twice")
        h, w, c, bits, _ = self._shape[src]
        layer = dict(type=kind, name=name, inputs=list(inputs or [src]), in_h=h, in_w=w, in_c=c,
                     out_h=out_hw[0], out_w=out_hw[1], out_c=out_c, in_bits=bits,
                     out_bits=out_bits, relu=relu, requant=requant, **extra)
        if min(out_hw) < 1:
            raise ValueError(f"layer {name}: output {out_hw} is empty")
        self.layers.append(layer)
        self._shape[name] = (out_hw[0], out_hw[1], out_c, out_bits, not relu)
        self._last = name
        return name

    def shape(self, name: str) -> tuple[int, int, int]:
        return self._shape[name][:3]

    def conv(self, name, out_c, kernel=3, stride=1, pad=None, groups=1, w_bits=4, a_bits=4,
             relu=True, src=None, thresholds=False) -> str:
        h, w, c, _, _ = self._shape[src or self._last]
        pad = kernel // 2 if pad is None else pad
        if groups != 1 and (groups != c or out_c != c):
            raise ValueError(f"layer {name}: groups must be 1 or in_c (depthwise, out_c == in_c)")
        oh, ow = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
        return self._add("conv2d", name, src, (oh, ow), out_c, a_bits, relu or thresholds, True,
                         dict(kernel=kernel, stride=stride, pad=pad, groups=groups, w_bits=w_bits,
                              **_act(thresholds)))

    def dwconv(self, name, kernel=3, stride=1, w_bits=4, a_bits=4, relu=True, src=None) -> str:
        c = self._shape[src or self._last][2]
        return self.conv(name, c, kernel, stride, None, c, w_bits, a_bits, relu, src)

    def maxpool(self, name, pool=2, stride=None, src=None) -> str:
        h, w, c, bits, signed = self._shape[src or self._last]
        stride = stride or pool
        out = ((h - pool) // stride + 1, (w - pool) // stride + 1)
        return self._add("maxpool", name, src, out, c, bits, not signed, False,
                         dict(pool=pool, stride=stride))

    def gap(self, name, a_bits=8, src=None) -> str:
        h, w, c, _, _ = self._shape[src or self._last]
        return self._add("gap", name, src, (1, 1), c, a_bits, True, True,
                         dict(sum_shift=round(math.log2(h * w))))

    def dense(self, name, out_features, w_bits=4, a_bits=8, relu=True, logits=False, src=None,
              thresholds=False) -> str:
        h, w, c, _, _ = self._shape[src or self._last]
        if logits and thresholds:
            raise ValueError(f"layer {name}: the logits layer has no thresholds")
        return self._add("dense", name, src, (1, 1), out_features, 32 if logits else a_bits,
                         (relu or thresholds) and not logits, not logits,
                         dict(in_features=h * w * c, out_features=out_features, w_bits=w_bits,
                              **_act(thresholds)))

    def quant(self, name, a_bits=8, relu=False, src=None) -> str:
        h, w, c, _, _ = self._shape[src or self._last]
        return self._add("quant", name, src, (h, w), c, a_bits, relu, True, {})

    def add(self, name, a: str, b: str, a_bits=8, relu=False, align_bits=None) -> str:
        if self._shape[a][:3] != self._shape[b][:3]:
            raise ValueError(f"layer {name}: cannot add {a} {self._shape[a][:3]} and {b} {self._shape[b][:3]}")
        h, w, c, _, _ = self._shape[a]
        align = align_bits or max(self._shape[a][3], self._shape[b][3]) + 1
        return self._add("add", name, a, (h, w), c, a_bits, relu, True,
                         dict(align_bits=min(align, 9), in_bits_b=self._shape[b][3]), inputs=[a, b])

    def upsample(self, name, src=None) -> str:
        h, w, c, bits, signed = self._shape[src or self._last]
        return self._add("upsample", name, src, (2 * h, 2 * w), c, bits, not signed, False,
                         dict(factor=2))


def _act(thresholds: bool) -> dict:
    # Absent unless set, so that every existing topology keeps its hash.
    return {"act": "thresholds"} if thresholds else {}


def is_threshold(layer: dict) -> bool:
    return layer.get("act") == "thresholds"


def n_thresholds(layer: dict) -> int:
    return (1 << layer["out_bits"]) - 1 if is_threshold(layer) else 0


def weight_shape(layer: dict) -> tuple[int, ...]:
    """conv2d [O][KH][KW][I/groups], dense [O][I]."""
    if layer["type"] == "conv2d":
        k = layer["kernel"]
        return (layer["out_c"], k, k, layer["in_c"] // layer["groups"])
    return (layer["out_features"], layer["in_features"])


def shift_names(layer: dict) -> tuple[str, ...]:
    """The layer's shift words, in blob order (none where thresholds requantize)."""
    if is_threshold(layer):
        return ()
    if layer["type"] == "add":
        return ("shift_a", "shift_b", "shift")
    return ("shift",)


def has_section(layer: dict) -> bool:
    """Layers with run-time parameters (weights and/or a shift) in the blob."""
    return layer["type"] in WEIGHTED or layer["requant"]


def check_layers(layers: list[dict], in_shape: tuple[int, int, int]) -> None:
    """Raise ValueError unless every layer reads existing tensors of the shape it
    declares (for layer lists that do not come from a GraphBuilder: imports)."""
    shapes = {INPUT: tuple(in_shape)}
    for layer in layers:
        name = layer.get("name")
        if name in shapes:
            raise ValueError(f"layer name {name!r} is used twice")
        for src in layer["inputs"]:
            if src not in shapes:
                raise ValueError(f"layer {name}: input {src!r} is not an earlier layer")
        got = shapes[layer["inputs"][0]]
        if got != (layer["in_h"], layer["in_w"], layer["in_c"]):
            raise ValueError(f"layer {name}: declares input {layer['in_h'], layer['in_w'], layer['in_c']}, "
                             f"{layer['inputs'][0]} gives {got}")
        if layer["type"] in WEIGHTED and not 1 <= layer["w_bits"] <= 8:
            raise ValueError(f"layer {name}: w_bits {layer['w_bits']} outside 1..8")
        if is_threshold(layer) and (layer["type"] not in WEIGHTED or not layer["requant"]):
            raise ValueError(f"layer {name}: thresholds need a requantizing conv2d or dense layer")
        shapes[name] = (layer["out_h"], layer["out_w"], layer["out_c"])


def topology_hash(layers: list[dict]) -> int:
    """CRC32 of the canonical layer list: equal hashes mean one synthesized core fits."""
    text = json.dumps(layers, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode()) & 0xFFFFFFFF
