"""Empirical bias correction after PTQ (numpy only; Nagel et al., 2019).

Rounding the weights of a layer to a few bits shifts the mean of each of its
output channels; the next layers see that shift as a systematic error. Layer
by layer, in execution order, this measures the mean pre-activation of each
channel in the integer model (its accumulator, from the integer input codes
the layers before it really produce) and in the float model, on the same
calibration maps, and moves the integer bias by the difference. A channel's
accumulator mean needs only the mean of each input position of the kernel:
``E[acc_c] = sum_{ky,kx,i} W[c,ky,kx,i] * M[ky,kx,i] + b_c``.
"""
from __future__ import annotations

import numpy as np

from contract.intmodel import IntModel
from quant.onnx_import.float_graph import FloatGraph


def _mean_acc(layer: dict, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean accumulator of each output channel over maps and positions."""
    if layer["type"] == "dense":
        return w.astype(np.float64) @ x.reshape(len(x), -1).mean(axis=0) + b
    k, p, s = layer["kernel"], layer["pad"], layer["stride"]
    oh, ow = layer["out_h"], layer["out_w"]
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    m = np.empty((k, k, x.shape[-1]))
    for ky in range(k):
        for kx in range(k):
            m[ky, kx] = xp[:, ky:ky + s * (oh - 1) + 1:s, kx:kx + s * (ow - 1) + 1:s, :].mean(axis=(0, 1, 2))
    if layer["groups"] == 1:
        return np.einsum("oyxi,yxi->o", w.astype(np.float64), m) + b
    return np.einsum("cyx,yxc->c", w[..., 0].astype(np.float64), m) + b      # depthwise


def correct(im: IntModel, fg: FloatGraph, float_means: dict[str, np.ndarray],
            acc_log2: dict[str, int], x_u8: np.ndarray) -> IntModel:
    """A copy of ``im`` whose weighted layers' biases carry the float model's
    channel means. ``float_means``: per layer name, the float pre-activation
    mean of each channel, already in the integer model's units."""
    weights = dict(im.weights)
    out = IntModel(im.spec, weights, im.logit_scale_log2)
    by_name = {lay.name: lay for lay in fg.layers}
    for layer in im.layers:
        name = layer["name"]
        if layer["type"] not in ("conv2d", "dense") or name not in float_means or name not in by_name:
            continue
        x = out.run(x_u8)[layer["inputs"][0]]
        b = weights[f"{name}.b"].astype(np.int64)
        got = _mean_acc(layer, x, weights[f"{name}.w"], b)
        want = float_means[name] * 2.0 ** -acc_log2[name]
        fixed = b + np.round(want - got).astype(np.int64)
        if np.abs(fixed).max(initial=0) < 2 ** 31:
            weights[f"{name}.b"] = fixed.astype(np.int32)
    return out
