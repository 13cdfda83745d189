"""A residual Add of two activation tensors, and the quantizer after it, as
our ``add`` layer: both inputs shifted to the finer of their two scales
(``shift_a``, ``shift_b``; a negative shift multiplies), summed, and the sum
requantized by a right shift rounding half to even (``shift``).

That is exact only when both inputs are plain unsigned codes (no offset:
ReLU outputs), their scales are a power of two apart, and the quantizer after
the Add is unsigned, without zero point, rounds half to even, and has a scale
a power of two away from the sum's; anything else is refused with a sentence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from quant.onnx_import.quantizers import Quantizer
from quant.onnx_import.read import attrs
from quant.onnx_import.refuse import node_refused
from quant.onnx_import.values import Codes

MAX_ALIGN_BITS = 9      # contract.graph caps the add's shared signed width there


@dataclass
class Sum:
    """x + y of two Codes, not emitted yet (it needs the quantizer after it)."""
    node: object
    x: Codes
    y: Codes
    relu: bool = False


def _log2_exact(node, r: float, what: str) -> int:
    m, e = math.frexp(r)
    if m != 0.5:
        raise node_refused(node, f"{what} is {r:g}, not a power of two")
    return e - 1


def begin(node, x: Codes, y: Codes) -> Sum:
    if x.flat or y.flat or x.chw != y.chw:
        raise node_refused(node, f"it adds tensors of shapes {x.chw} and {y.chw}")
    if np.any(x.off != 0) or np.any(y.off != 0):
        raise node_refused(node, "it adds codes whose real zero is not code 0 (signed or bipolar "
                                 "activations); residual adds of unsigned (ReLU) codes are supported")
    _log2_exact(node, x.a / y.a, "the ratio of its inputs' scales")
    return Sum(node, x, y)


def emit(builder, name: str, s: Sum, q: Quantizer, weights: dict) -> Codes:
    """Emit the add layer for ``s`` quantized by ``q``; ``weights`` gets its three shifts."""
    at = attrs(q.node)
    if q.node.op_type != "Quant" or at.get("signed", 1) or at.get("narrow", 0) or q.off != 0 \
            or q.rule != "round":
        raise node_refused(q.node, "after a residual Add only an unsigned Quant without zero point "
                                   "that rounds half to even maps exactly onto the add layer")
    fine = min(s.x.a, s.y.a)
    kx = _log2_exact(s.node, s.x.a / fine, "the ratio of its inputs' scales")
    ky = _log2_exact(s.node, s.y.a / fine, "the ratio of its inputs' scales")
    align = max(s.x.bits + kx, s.y.bits + ky) + 1
    if align > MAX_ALIGN_BITS:
        raise node_refused(s.node, f"its aligned inputs need {align} signed bits; "
                                   f"{MAX_ALIGN_BITS} is the most")
    shift = _log2_exact(q.node, q.a / fine, "its scale over the sum's")
    builder.add(name, s.x.layer, s.y.layer, a_bits=q.bits, relu=True, align_bits=align)
    weights[f"{name}.shift_a"] = np.array(-kx, dtype=np.int32)
    weights[f"{name}.shift_b"] = np.array(-ky, dtype=np.int32)
    weights[f"{name}.shift"] = np.array(shift, dtype=np.int32)
    return Codes(name, q.bits, q.a, np.array([0.0]), s.x.chw)
