"""Power-of-two scales for post-training quantization (numpy only).

The project's convention (docs/ARCHITECTURE.md, "Training"): every tensor has
one scale ``2**k``; weights are symmetric with a narrow range from 3 bits up
(``-(2**(b-1) - 1) .. 2**(b-1) - 1``) and use the full two's-complement range
``-2..1`` at 2 bits; activations after a ReLU are unsigned codes
``0 .. 2**b - 1``, other activations signed ``-2**(b-1) .. 2**(b-1) - 1``.
Rounding is half to even (``np.round``, as torch.round and the integer
model's requantization). Each scale is the power of two with the least
quantization MSE on the values it covers (the weights, or the calibration
activations), searched from the one that clips nothing down to ``SEARCH``
steps finer.
"""
from __future__ import annotations

import numpy as np

SEARCH = 6     # finer scales tried below the one that clips nothing


def weight_range(bits: int) -> tuple[int, int]:
    if not 2 <= bits <= 8:
        raise ValueError(f"weight bits {bits} outside 2..8")
    top = (1 << (bits - 1)) - 1
    return (-top if bits > 2 else -2), top


def act_range(bits: int, unsigned: bool) -> tuple[int, int]:
    if not 2 <= bits <= 8:
        raise ValueError(f"activation bits {bits} outside 2..8")
    return (0, (1 << bits) - 1) if unsigned else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def quantize(values: np.ndarray, k: int, lo: int, hi: int) -> np.ndarray:
    """Integer codes of ``values`` at scale 2**k (half to even, then clamped)."""
    return np.clip(np.round(np.asarray(values, np.float64) * 2.0 ** -k), lo, hi)


def mse_log2(values: np.ndarray, lo: int, hi: int) -> int:
    """The exponent k whose scale 2**k quantizes ``values`` with the least MSE."""
    v = np.asarray(values, np.float64).ravel()
    peak = max(float(np.max(v, initial=0.0)) / hi, float(-np.min(v, initial=0.0)) / -lo if lo else 0.0)
    if peak <= 0.0:
        return 0       # an all-zero tensor: any scale is exact
    top = int(np.ceil(np.log2(peak)))
    best, best_err = top, np.inf
    for k in range(top, top - SEARCH - 1, -1):
        err = float(np.mean((quantize(v, k, lo, hi) * 2.0 ** k - v) ** 2))
        if err < best_err:      # ties keep the coarser scale (clips less)
            best, best_err = k, err
    return best


def quantize_weights(w: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """(int8 codes, k) for float weights at ``bits``, per tensor."""
    lo, hi = weight_range(bits)
    k = mse_log2(w, lo, hi)
    return quantize(w, k, lo, hi).astype(np.int8), k


def act_log2(samples: np.ndarray, bits: int, unsigned: bool) -> int:
    lo, hi = act_range(bits, unsigned)
    return mse_log2(samples, lo, hi)


def bias_codes(b: np.ndarray, acc_log2: int, layer: str) -> np.ndarray:
    """Biases at the accumulator scale 2**acc_log2, int32."""
    q = np.round(np.asarray(b, np.float64) * 2.0 ** -acc_log2)
    if q.size and np.abs(q).max() >= 2 ** 31:
        raise ValueError(f"layer {layer}: a bias does not fit in int32 at the accumulator scale 2**{acc_log2}")
    return q.astype(np.int32)
