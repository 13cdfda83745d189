"""Weighted layers: from an ONNX MatMul/Gemm/Conv with quantized weights to an
``Acc``, and from an ``Acc`` plus its quantizer to a thresholds layer (or, at
the graph's end, to the logits layer and the host's float tail)."""
from __future__ import annotations

import numpy as np

from quant.onnx_import.quantizers import Quantizer
from quant.onnx_import.read import attrs
from quant.onnx_import.refuse import ImportRefused, node_refused
from quant.onnx_import.thresholds import channel_thresholds
from quant.onnx_import.values import Acc, Codes, QConst

INT32 = (1 << 31) - 1


def _out_scale(node, w: QConst, axis: int) -> np.ndarray:
    """The weight scale per output channel (``axis`` of ``w``); other axes must share it."""
    s = np.moveaxis(np.broadcast_to(w.scale, w.ints.shape), axis, 0).reshape(w.ints.shape[axis], -1)
    if not np.all(s == s[:, :1]):
        raise node_refused(node, "its weight scale varies along the input; per-output-channel "
                                 "or per-tensor weight scales are supported")
    if np.any(s[:, 0] <= 0):
        raise node_refused(node, "a weight scale is not positive")
    return s[:, 0].astype(np.float64)


def dense(node, x: Codes, w: QConst, bias: np.ndarray | None, gemm: dict | None) -> Acc:
    """MatMul (x [1][F] @ W [F][O]) or Gemm (with transB and alpha/beta)."""
    if not x.flat:
        raise node_refused(node, f"its input has shape {x.chw}; flatten it first")
    ints, scale = w.ints, np.broadcast_to(w.scale, w.ints.shape)
    alpha_g = 1.0
    if gemm is not None:
        if gemm.get("transA", 0):
            raise node_refused(node, "transA is not supported")
        if gemm.get("transB", 0):
            ints, scale = ints.T, scale.T
        alpha_g = float(gemm.get("alpha", 1.0))
        bias = None if bias is None else bias * float(gemm.get("beta", 1.0))
    c, h, wd = x.chw
    if ints.ndim != 2 or ints.shape[0] != c * h * wd:
        raise node_refused(node, f"its weights {tuple(ints.shape)} do not take {c * h * wd} features")
    o = ints.shape[1]
    s_w = _out_scale(node, QConst(ints, scale, w.bits, w.bipolar, w.node), 1) * alpha_g
    if alpha_g <= 0:
        raise node_refused(node, f"Gemm alpha {alpha_g} is not positive")
    w_oi = ints.T.astype(np.int64)                                   # [O][F], F in CHW order
    k = w_oi @ x.off_per_feature().astype(np.float64)
    e = _bias(bias, o)
    # Our dense reads the HWC flatten; ONNX's flatten after a conv stack is CHW.
    ours = w_oi.reshape(o, c, h, wd).transpose(0, 2, 3, 1).reshape(o, -1)
    return Acc("dense", node, x, ours, w.bits, s_w * x.a, k, e, (o, 1, 1), {}, node.output[0])


def _bias(bias, o: int) -> np.ndarray:
    if bias is None:
        return np.zeros(o)
    return np.broadcast_to(np.asarray(bias, dtype=np.float64).reshape(-1), (o,)).copy()


def conv(node, x: Codes, w: QConst, bias: np.ndarray | None) -> Acc:
    at = attrs(node)
    if x.flat:
        raise node_refused(node, "its input is flattened")
    ints = w.ints
    o, i_g, kh, kw = ints.shape
    c, h, wd = x.chw
    group = int(at.get("group", 1))
    pads = list(at.get("pads", [0, 0, 0, 0]))
    strides = list(at.get("strides", [1, 1]))
    if kh != kw:
        raise node_refused(node, f"its kernel is {kh}x{kw}; square kernels are supported")
    if len(set(pads)) != 1 or len(set(strides)) != 1 or any(d != 1 for d in at.get("dilations", [1, 1])):
        raise node_refused(node, f"pads {pads}, strides {strides}: equal pads and strides on every "
                                 f"side and no dilation are supported")
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise node_refused(node, "auto_pad is not supported; give explicit pads")
    if group not in (1, c) or (group == c and c > 1 and o != c):
        raise node_refused(node, f"group {group}: plain or depthwise convolutions are supported")
    pad, stride = pads[0], strides[0]
    off = np.broadcast_to(x.off.reshape(-1), (c,)).astype(np.float64)
    if pad and np.any(off != 0):
        raise node_refused(node, "it zero-pads codes whose real zero is not code 0 (a bipolar or "
                                 "offset activation), so the padding cannot be folded exactly; "
                                 "export the model without padding on such layers")
    s_w = _out_scale(node, w, 0)
    wi = ints.astype(np.int64)
    k = np.einsum("oiyx,i->o", wi, off) if group == 1 else wi.sum(axis=(1, 2, 3)) * off
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    geometry = dict(kernel=kh, stride=stride, pad=pad, groups=group)
    return Acc("conv2d", node, x, wi.transpose(0, 2, 3, 1), w.bits, s_w * x.a, k, _bias(bias, o), (o, oh, ow),
               geometry, node.output[0])


def _w_bits(weights: np.ndarray, declared: int, bipolar: bool) -> int:
    if bipolar and np.all(np.abs(weights) == 1):
        return 1
    lo, hi = int(weights.min(initial=0)), int(weights.max(initial=0))
    bits = max(declared, 2)
    while lo < -(1 << (bits - 1)) or hi > (1 << (bits - 1)) - 1:
        bits += 1
    if bits > 8:
        raise ImportRefused(f"weights {lo}..{hi} need {bits} bits; 8 is the most")
    return bits


def acc_bound(acc: Acc) -> int:
    """max |sum w * code| over every input (codes 0 .. 2**bits - 1)."""
    top = (1 << acc.src.bits) - 1
    return int(np.abs(acc.weights).reshape(acc.out_c, -1).sum(axis=1).max(initial=0)) * top


def thresholds_layer(builder, name: str, acc: Acc, q: Quantizer, weights: dict) -> None:
    """Emit ``acc`` followed by ``q`` as a thresholds layer; ``weights`` gets its arrays."""
    bound = acc_bound(acc)
    n = (1 << q.bits) - 1
    w = acc.weights.copy()
    thr = np.empty((acc.out_c, n), dtype=np.int64)
    for ch in range(acc.out_c):
        bounds = q.bounds(ch)
        if len(bounds) > n:
            raise node_refused(q.node, f"{len(bounds)} thresholds do not fit {q.bits}-bit codes")
        got = channel_thresholds(acc.alpha[ch], acc.k[ch], acc.e[ch], acc.relu, bounds, bound)
        thr[ch] = got.thresholds + [bound + 1] * (n - len(bounds))   # never reached: narrow ranges
        if got.negate:
            w[ch] = -w[ch]
    if bound + 1 > INT32:
        raise node_refused(acc.node, f"its accumulator reaches {bound}, past int32")
    w_bits = _w_bits(w, acc.w_bits, acc.w_bits == 1)
    _add_weighted(builder, name, acc, w_bits, q.bits, thresholds=True)
    weights[f"{name}.w"] = w.astype(np.int8)
    weights[f"{name}.b"] = np.zeros(acc.out_c, dtype=np.int32)
    weights[f"{name}.thr"] = thr.astype(np.int32)


def _add_weighted(builder, name, acc: Acc, w_bits: int, a_bits: int, thresholds=False, logits=False):
    if acc.kind == "conv2d":
        g = acc.geometry
        builder.conv(name, acc.out_c, kernel=g["kernel"], stride=g["stride"], pad=g["pad"],
                     groups=g["groups"], w_bits=w_bits, a_bits=a_bits, src=acc.src.layer,
                     thresholds=thresholds)
    else:
        builder.dense(name, acc.out_c, w_bits=w_bits, a_bits=a_bits, logits=logits,
                      src=acc.src.layer, thresholds=thresholds)


def logits_layer(builder, name: str, acc: Acc, weights: dict) -> tuple[dict | None, int, np.ndarray, str]:
    """Emit the last dense layer; return (host_post, m, B, note): the integer
    logit is ``L = m * acc + B`` (``m`` doubles bipolar-input weights so that
    the offset stays an integer) and ``host_post`` maps it to the graph output."""
    if acc.kind != "dense":
        raise node_refused(acc.node, "the graph must end in a dense (MatMul/Gemm) layer")
    if acc.relu:
        raise node_refused(acc.node, "a ReLU after the last dense layer is not supported")
    if np.any(acc.alpha == 0):
        raise node_refused(acc.node, "a class has a zero scale")
    ratio = acc.k
    note = ""
    for m in (1, 2, 4, 8):
        if np.all(np.abs(m * ratio - np.round(m * ratio)) <= 1e-9 * np.maximum(1, np.abs(m * ratio))):
            break
    else:
        m = 1
        note = "the logits' input offset is not an integer: it moves to host_post's offset"
    big = np.round(m * ratio)
    if np.any(np.abs(big) > INT32):
        raise node_refused(acc.node, "its bias does not fit int32")
    w = acc.weights * m
    w_bits = _w_bits(w, acc.w_bits, acc.w_bits == 1 and m == 1)
    _add_weighted(builder, name, acc, w_bits, 32, logits=True)
    weights[f"{name}.w"] = w.astype(np.int8)
    weights[f"{name}.b"] = big.astype(np.int32)
    weights[f"{name}.shift"] = np.array(0, dtype=np.int32)      # logits keep the whole accumulator
    scale = acc.alpha / m
    offset = acc.e + acc.alpha * (acc.k - big / m)
    post = {"scale": _compact(scale), "offset": _compact(offset)}
    if post == {"scale": 1.0, "offset": 0.0}:
        post = None
    return post, m, big, note


def _compact(v: np.ndarray):
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return float(v[0]) if np.all(v == v[0]) else [float(e) for e in v]
