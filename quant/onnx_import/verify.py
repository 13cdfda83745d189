"""The import's proof: the integer model against qonnx's ``execute_onnx``.

Inputs are generated from codes: each input value sits in the middle of its
host_pre rounding interval (a random fraction of a step away from the edges),
so the host's float64 quantization and ONNX's float32 one agree. On those
inputs every mapped layer's integer output must equal the ONNX tensor it
stands for, mapped back to codes (``(real - b) / a``), exactly; the logits
after ``host_post`` must equal the graph output within ``TAIL_RTOL`` of its
largest magnitude (float32 in ONNX against float64 on the host: only that
tail is float).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qonnx.core.onnx_exec import execute_onnx

from contract import host_steps
from quant.onnx_import.mapping import Check
from quant.onnx_import.refuse import ImportRefused

TAIL_RTOL = 1e-4        # of max(1, |output|): float32 ONNX tail against the host's float64
INT_ATOL = 1e-3         # how far an ONNX tensor may sit off an integer code (float32 sums)


@dataclass
class Verified:
    n: int
    max_abs_err: float
    tolerance: float
    layers_exact: int


def inputs(host_pre: dict, in_chw, onnx_shape, n: int, seed: int) -> np.ndarray:
    """n float32 inputs in the ONNX layout (NCHW or N x F), codes spread over the range."""
    rng = np.random.default_rng(seed)
    c, h, w = in_chw
    scale = np.asarray(host_pre["scale"], dtype=np.float64)
    offset = np.asarray(host_pre["offset"], dtype=np.float64)
    rule = host_pre.get("rule", "round")
    shape = (n, h, w, c)
    if rule == "sign":
        y = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 1.0, size=shape)
    else:
        codes = rng.integers(0, host_pre["max_code"] + 1, size=shape)
        centre = {"round": 0.0, "floor": 0.5, "ceil": -0.5}.get(rule, 0.0)
        y = codes + centre + rng.uniform(-0.3, 0.3, size=shape)
    x = ((y - offset) / scale).astype(np.float32)                  # HWC
    x = x.transpose(0, 3, 1, 2)                                      # NCHW
    return x.reshape((n,) + tuple(int(d) for d in onnx_shape[1:]))


def _to_hwc(value: np.ndarray, chk: Check) -> np.ndarray:
    c, h, w = chk.chw
    v = np.asarray(value, dtype=np.float64).reshape(c, h, w)
    b = np.asarray(chk.b, dtype=np.float64)
    b = b.reshape(c, h, w) if b.size == c * h * w else (b.reshape(c, 1, 1) if b.size == c else b.reshape(()))
    return ((v - b) / float(np.asarray(chk.a).reshape(-1)[0]) if np.size(chk.a) == 1
            else (v - b) / np.asarray(chk.a).reshape(c, 1, 1)).transpose(1, 2, 0)


def verify(model, intmodel, spec, checks: list[Check], n: int, seed: int) -> Verified:
    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    xs = inputs(spec.host_pre, _chw(spec), model.get_tensor_shape(in_name), n, seed)
    hwc = xs.reshape((n,) + _chw(spec)).transpose(0, 2, 3, 1)
    codes = host_steps.pre(spec.host_pre, hwc, spec.in_bits)
    acts = intmodel.run(codes)
    last = intmodel.layers[-1]["name"]
    real = host_steps.post(spec.host_post, acts[last].reshape(n, -1))
    worst, tol_used = 0.0, 0.0
    for i in range(n):
        ctx = execute_onnx(model, {in_name: xs[i:i + 1]}, return_full_exec_context=True)
        for chk in checks:
            want = _to_hwc(ctx[chk.tensor], chk)
            got = acts[chk.layer][i]
            off = np.abs(want - np.round(want)).max(initial=0)
            bad = np.round(want) != got
            if off > INT_ATOL or bad.any():
                where = np.argwhere(bad)
                raise ImportRefused(
                    f"verification failed: layer {chk.layer} differs from ONNX tensor {chk.tensor!r} "
                    f"on generated input {i} ({int(bad.sum())} of {bad.size} values, first at HWC "
                    f"{tuple(where[0]) if len(where) else '-'}; ONNX sits {off:.3g} off an integer); "
                    f"nothing was written")
        ref = np.asarray(ctx[out_name], dtype=np.float64).reshape(-1)
        tol = TAIL_RTOL * max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(real[i] - ref).max())
        if err > tol:
            raise ImportRefused(f"verification failed: the logits after host_post differ from the ONNX "
                                f"output by {err:.3g} (> {tol:.3g}) on generated input {i}; nothing was written")
        worst, tol_used = max(worst, err), max(tol_used, tol)
    return Verified(n, worst, tol_used, len(checks))


def _chw(spec) -> tuple[int, int, int]:
    return spec.in_channels, spec.in_h, spec.in_w
