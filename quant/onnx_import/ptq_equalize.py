"""Cross-layer equalization of a float graph before PTQ (numpy only).

One scale a weight tensor (the project's convention) wastes bits on the
channels whose weights are small next to the tensor's largest. Between two
weighted layers joined only by a ReLU, max pools and a GAP, all of which
commute with a positive per-channel factor, output channel i of the first can
be divided by s_i and input channel i of the second multiplied by it without
changing the float function (Nagel et al., "Data-Free Quantization", 2019;
``quant/equalize.py`` does the same in torch for the depthwise nets). With
``s_i = sqrt(r1_i / r2_i)`` (r1_i, r2_i: the largest |weight| of channel i on
each side) both sides end with range ``sqrt(r1_i * r2_i)``. A few sweeps over
all pairs converge.

Each equalized layer records its output factor (``attrs["eq"]``), so the
calibration samples taken from the unequalized ONNX model are scaled the same
way (``ptq_quantize``).
"""
from __future__ import annotations

import numpy as np

from quant.onnx_import.float_graph import FloatGraph, FloatLayer

SWEEPS = 4
PASS_THROUGH = ("maxpool", "gap")


def _pairs(fg: FloatGraph) -> list[tuple[FloatLayer, list[FloatLayer], FloatLayer]]:
    """(producer, pass-through layers, consumer) chains with no other reader."""
    readers: dict[str, list[FloatLayer]] = {}
    for lay in fg.layers:
        for src in lay.inputs:
            readers.setdefault(src, []).append(lay)
    out = []
    for p in fg.layers:
        if p.kind not in ("conv", "dense") or p.attrs.get("groups", 1) != 1:
            continue
        mid, cur = [], p
        while len(readers.get(cur.name, [])) == 1 and readers[cur.name][0].kind in PASS_THROUGH:
            cur = readers[cur.name][0]
            mid.append(cur)
        nxt = readers.get(cur.name, [])
        if len(nxt) == 1 and nxt[0].kind in ("conv", "dense") and nxt[0].attrs.get("groups", 1) == 1:
            out.append((p, mid, nxt[0]))
    return out


def _in_axis(c: FloatLayer, channels: int) -> np.ndarray:
    """c's weights as [out][channel][rest]: conv OIHW, dense [out][C*H*W] (C,H,W order)."""
    return c.w.reshape(c.w.shape[0], channels, -1)


def equalize(fg: FloatGraph) -> int:
    """Equalize every chain in place; returns how many were equalized."""
    pairs = _pairs(fg)
    for _ in range(SWEEPS):
        for p, mid, c in pairs:
            n = p.w.shape[0]
            r1 = np.abs(p.w.reshape(n, -1)).max(axis=1)
            cw = _in_axis(c, n)
            r2 = np.abs(cw).max(axis=(0, 2))
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones(n)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            p.w = p.w / s.reshape((-1,) + (1,) * (p.w.ndim - 1))
            p.b = p.b / s
            c.w = (cw * s[None, :, None]).reshape(c.w.shape)
            for lay in [p, *mid]:
                lay.attrs["eq"] = lay.attrs.get("eq", np.ones(n)) / s
    return len(pairs)
