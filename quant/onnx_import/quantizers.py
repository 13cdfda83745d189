"""The activation quantizers (Quant, BipolarQuant, MultiThreshold) as data:
their boundaries on the real value they read, and the affine map from the
code they emit to its real value (``real = a * code + b``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from quant.onnx_import.read import attrs, constant
from quant.onnx_import.refuse import node_refused
from quant.onnx_import.thresholds import (Boundary, quant_boundaries, sign_boundary,
                                          threshold_boundaries)

QUANTIZERS = ("Quant", "BipolarQuant", "MultiThreshold")


@dataclass
class Quantizer:
    node: object
    bits: int
    a: float                 # real = a * (code + off)
    off: float
    bounds: Callable[[int], list[Boundary]]      # channel -> boundaries (code k reached at k-1)
    # For the host: code = rule(u), u = y / scale + zeropt - q_min (see contract.host_steps).
    rule: str = "round"
    scale: float = 1.0
    shift: float = 0.0       # zeropt - q_min; for "sign": zeropt * scale added to y
    max_code: int = 1

    def describe(self) -> str:
        return f"{self.node.op_type} to {self.bits}-bit codes (real = {self.a:g} * (code + {self.off:g}))"


def _scalar(model, node, idx: int, what: str) -> float:
    value = constant(model, node.input[idx])
    if value is None:
        raise node_refused(node, f"its {what} is computed, not a constant")
    if value.size != 1:
        raise node_refused(node, f"its {what} has {value.size} values; per-tensor activation "
                                 f"quantizers are supported")
    return float(value.reshape(-1)[0])


def read(model, node) -> Quantizer:
    """The quantizer ``node`` applied to a computed tensor."""
    if node.op_type == "BipolarQuant":
        s = _scalar(model, node, 1, "scale")
        if s <= 0:
            raise node_refused(node, f"its scale {s} is not positive")
        return Quantizer(node, 1, 2 * s, -0.5, lambda c: sign_boundary(), "sign", 1.0, 0.0, 1)
    if node.op_type == "Quant":
        s, z, bits = (_scalar(model, node, i, w) for i, w in ((1, "scale"), (2, "zero point"),
                                                              (3, "bit width")))
        at = attrs(node)
        signed, narrow = bool(at.get("signed", 1)), bool(at.get("narrow", 0))
        mode = at.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
        mode = "ROUND" if mode == "HALF_EVEN" else mode
        if s <= 0:
            raise node_refused(node, f"its scale {s} is not positive")
        if bits != int(bits) or not 1 <= bits <= 8:
            raise node_refused(node, f"its bit width {bits} is not an integer in 1..8")
        bits = int(bits)
        if bits == 1 and signed:      # qonnx runs a 1-bit signed Quant as bipolar (sign at 0)
            return Quantizer(node, 1, 2 * s, -(1 + z) / 2,
                             lambda c: [Boundary(-Fraction(z) * Fraction(s), False)],
                             "sign", 1.0, z * s, 1)
        if mode not in ("ROUND", "FLOOR", "CEIL"):
            raise node_refused(node, f"rounding mode {mode} is not one of ROUND, FLOOR, CEIL")
        q_min = -(1 << (bits - 1)) + int(narrow) if signed else 0
        q_max = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - int(narrow)
        bounds = quant_boundaries(s, z, q_min, q_max, mode)
        return Quantizer(node, bits, s, q_min - z, lambda c: bounds, mode.lower(),
                         s, z - q_min, q_max - q_min)
    if node.op_type == "MultiThreshold":
        thr = constant(model, node.input[1])
        if thr is None:
            raise node_refused(node, "its thresholds are computed, not a constant")
        at = attrs(node)
        if at.get("data_layout", b"NCHW") not in (b"NCHW", "NCHW", b"NC", "NC"):
            raise node_refused(node, "only the NCHW data layout is supported")
        thr = np.asarray(thr, dtype=np.float64).reshape(thr.shape[0], -1)
        n = thr.shape[1]
        bits = max(1, math.ceil(math.log2(n + 1)))
        if bits > 8:
            raise node_refused(node, f"{n} thresholds make {bits}-bit codes; 8 is the most")
        out_scale = float(at.get("out_scale", 1.0))
        if out_scale <= 0:
            raise node_refused(node, f"its out_scale {out_scale} is not positive")
        return Quantizer(node, bits, out_scale, float(at.get("out_bias", 0.0)) / out_scale,
                         lambda c: threshold_boundaries(thr[c if thr.shape[0] > 1 else 0]),
                         "thresholds", 1.0, 0.0, n)
    raise node_refused(node, "is not a quantizer")
