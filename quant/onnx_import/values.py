"""What the mapping knows about each ONNX tensor while it walks the graph.

Shapes are ONNX's (NCHW without the batch: ``(C, H, W)``, or ``(F,)`` once
flattened). The integer layers they become are HWC.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QConst:
    """A quantized constant (weights): real = scale * ints, ints exact integers."""
    ints: np.ndarray
    scale: np.ndarray        # broadcast to ints.shape
    bits: int
    bipolar: bool
    node: object             # the quantizer node, for sentences


@dataclass
class HostIn:
    """The graph input after float steps the host will run: ``mul * x + add``
    (a number or one per channel); ``flat`` once reshaped to features."""
    chw: tuple[int, int, int]
    mul: np.ndarray
    add: np.ndarray
    flat: bool = False
    steps: tuple[str, ...] = ()


@dataclass
class Codes:
    """Integer activation codes of layer ``layer`` (0 .. 2**bits - 1) with the real
    value ``a * (code + off)``; ``a`` one number, ``off`` (in code steps: -1/2
    for a bipolar code) one per channel (spatial) or per feature in ONNX's CHW
    order (flat). ``chw`` is the shape before any
    flatten; ``flat`` says the tensor is the CHW flatten of it."""
    layer: str
    bits: int
    a: float
    off: np.ndarray
    chw: tuple[int, int, int]
    flat: bool = False

    def off_per_feature(self) -> np.ndarray:
        c, h, w = self.chw
        if self.off.size == c * h * w:
            return self.off.reshape(-1)
        if self.off.size == 1:
            return np.full(c * h * w, float(self.off.reshape(-1)[0]))
        return np.repeat(self.off.reshape(-1), h * w)      # per channel -> CHW flatten order


@dataclass
class Acc:
    """The accumulator of a weighted layer not emitted yet: per output channel
    ``v = alpha * (acc + k) + e`` (``acc`` = sum of int weights x input codes;
    ``k`` = sum of int weights x input offsets, exact: integers or halves, kept
    apart from the float ``e`` so that a threshold lands on the exact integer),
    then ReLU when ``relu``. ``weights`` is in our layout (conv [O][KH][KW][I],
    dense [O][I] in HWC order)."""
    kind: str                # "conv2d" or "dense"
    node: object
    src: Codes
    weights: np.ndarray
    w_bits: int
    alpha: np.ndarray
    k: np.ndarray
    e: np.ndarray
    out_chw: tuple[int, int, int]
    geometry: dict
    tensor: str              # the ONNX tensor of the raw accumulator's real value
    alpha0: np.ndarray | None = None
    e0: np.ndarray | None = None
    relu: bool = False
    ops: tuple[str, ...] = ()     # the float steps folded in after the weighted node

    def __post_init__(self):
        self.alpha0, self.e0 = self.alpha.copy(), self.e.copy()

    @property
    def out_c(self) -> int:
        return self.out_chw[0]
