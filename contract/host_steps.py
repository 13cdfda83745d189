"""The float steps an imported model leaves to the host (``GraphSpec.host_pre``
and ``host_post``), executed here so that the host, the importer's check and
the tests run one implementation.

``host_pre`` (None: the input already is codes) maps float inputs, HWC with
the channel last, to the integer model's input codes::

    y = x * scale + offset            (scale, offset: a number or one per channel)
    rule "round" (default): code = clamp(round_half_even(y), 0, max_code)
    rule "floor" / "ceil":  the same with that rounding
    rule "sign":            code = 1 if y >= 0 else 0 (a bipolar input, value 2*code - 1)

``max_code`` defaults to ``2**in_bits - 1``; a narrow-range input quantizer
uses fewer codes.

``host_post`` (None: the logits are final) maps the integer logits [N][classes]
to real values: ``real = logit * scale + offset``, each a number or one per class.
"""
from __future__ import annotations

import numpy as np

_ROUND = {"round": np.round, "floor": np.floor, "ceil": np.ceil}


def pre(host_pre: dict | None, x: np.ndarray, in_bits: int) -> np.ndarray:
    """Float inputs [..][C] -> uint8 codes of the same shape."""
    x = np.asarray(x)
    if host_pre is None:
        return x.astype(np.uint8)
    y = x.astype(np.float64) * np.asarray(host_pre["scale"], dtype=np.float64) \
        + np.asarray(host_pre["offset"], dtype=np.float64)
    rule = host_pre.get("rule", "round")
    if rule == "sign":
        return (y >= 0).astype(np.uint8)
    if rule not in _ROUND:
        raise ValueError(f"host_pre rule {rule!r} is not one of sign, {', '.join(_ROUND)}")
    top = host_pre.get("max_code", (1 << in_bits) - 1)
    return np.clip(_ROUND[rule](y), 0, top).astype(np.uint8)


def post(host_post: dict | None, logits: np.ndarray) -> np.ndarray:
    """Integer logits [N][classes] -> float64 real logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if host_post is None:
        return logits
    return logits * np.asarray(host_post["scale"], dtype=np.float64) \
        + np.asarray(host_post["offset"], dtype=np.float64)
