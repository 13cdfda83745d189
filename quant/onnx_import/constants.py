"""Weights: constants through a quantizer (Quant, BipolarQuant) or, in QCDQ
files, integer constants through DequantizeLinear, as exact integers and
their scale."""
from __future__ import annotations

import numpy as np

from quant.onnx_import.read import attrs
from quant.onnx_import.refuse import node_refused
from quant.onnx_import.values import QConst


def quantized(node, ins) -> QConst:
    x = ins[0]
    if isinstance(x, QConst):
        raise node_refused(node, "quantizes weights twice")
    x = np.asarray(x, dtype=np.float64)
    if node.op_type == "BipolarQuant":
        s = np.asarray(ins[1], dtype=np.float64)
        return QConst(np.where(x >= 0, 1, -1).astype(np.int64), np.broadcast_to(s, x.shape), 1, True, node)
    s, z, bits = (np.asarray(v, dtype=np.float64) for v in ins[1:4])
    at = attrs(node)
    if np.any(z != 0):
        raise node_refused(node, "weights with a zero point are not supported")
    if bits.size != 1 or bits != int(bits) or not 1 <= int(bits) <= 8:
        raise node_refused(node, f"weight bit width {bits} is not an integer in 1..8")
    bits = int(bits)
    signed, narrow = bool(at.get("signed", 1)), bool(at.get("narrow", 0))
    if bits == 1 and signed:
        return QConst(np.where(x / s >= 0, 1, -1).astype(np.int64), np.broadcast_to(s, x.shape), 1, True, node)
    mode = at.get("rounding_mode", b"ROUND")
    mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
    rnd = {"ROUND": np.round, "HALF_EVEN": np.round, "FLOOR": np.floor, "CEIL": np.ceil}.get(mode)
    if rnd is None:
        raise node_refused(node, f"rounding mode {mode} is not one of ROUND, FLOOR, CEIL")
    lo = -(1 << (bits - 1)) + int(narrow) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - int(narrow)
    ints = rnd(np.clip(x / s, lo, hi)).astype(np.int64)
    return QConst(ints, np.broadcast_to(s, x.shape), bits + (0 if signed else 1), False, node)


def dequantized(node, ins) -> QConst:
    """QCDQ weights: integer constants (maybe clipped) through DequantizeLinear."""
    q = np.asarray(ins[0]).astype(np.int64)
    s = np.asarray(ins[1], dtype=np.float64)
    z = np.asarray(ins[2]).astype(np.int64) if len(ins) > 2 and ins[2] is not None else np.zeros(1, np.int64)
    axis = int(attrs(node).get("axis", 1))
    if s.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), (z.reshape(shape) if z.size > 1 else z)
    return QConst(q - z, np.broadcast_to(s, q.shape), 2, False, node)
