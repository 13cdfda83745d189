"""Exact integer thresholds for a quantizer that follows an affine map of an
integer accumulator.

A weighted layer's accumulator ``acc`` (an integer) has the real value
``v = alpha * (acc + k) + e`` per output channel (weight and input scales, batch
norm, constant Mul/Add folded in); optionally ``v`` goes through a ReLU. The
quantizer then emits code ``k`` (0 .. n) when ``v`` reaches its k-th
boundary. Each boundary is a condition ``v >= B`` or ``v > B``. The integer
layer computes ``count(acc' >= T[k])`` (FINN MultiThreshold), so every boundary
becomes the least integer ``T`` with ``acc >= T`` exactly when the condition
holds: a ceiling taken in exact rational arithmetic (``fractions.Fraction``
of the float64 parameters), never a float ceil that could land one off.

A negative ``alpha`` makes the output fall as ``acc`` rises: that channel's
accumulator is negated (its weights flip) and ``acc <= r`` becomes
``-acc >= -floor(r)``; with a strict boundary ``acc < r`` it is
``-acc >= 1 - ceil(r)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Boundary:
    """The condition ``v >= value`` (strict False) or ``v > value`` (strict True)."""
    value: Fraction
    strict: bool

    def holds(self, v: Fraction) -> bool:
        return v > self.value if self.strict else v >= self.value


def quant_boundaries(scale, zeropt, q_min: int, q_max: int, rounding: str) -> list[Boundary]:
    """Boundaries of ``q = clamp(rnd(v / scale + zeropt), q_min, q_max)``: code k
    (= q - q_min) is reached when ``v`` satisfies boundary k-1.

    ``rnd`` is numpy's round (half to even), floor or ceil, as qonnx's Quant."""
    s, z = Fraction(float(scale)), Fraction(float(zeropt))
    if s <= 0:
        raise ValueError(f"quantizer scale {float(scale)} is not positive")
    out = []
    for m in range(q_min + 1, q_max + 1):
        # rnd(u) >= m, u = v / s + z
        if rounding == "ROUND":      # half to even: m - 1/2 rounds up to m only when m is even
            u, strict = Fraction(2 * m - 1, 2), m % 2 == 1
        elif rounding == "FLOOR":
            u, strict = Fraction(m), False
        elif rounding == "CEIL":
            u, strict = Fraction(m - 1), True
        else:
            raise ValueError(f"rounding mode {rounding} is not one of ROUND, FLOOR, CEIL")
        out.append(Boundary((u - z) * s, strict))
    return out


def sign_boundary() -> list[Boundary]:
    """BipolarQuant (and a 1-bit signed Quant): +1 when v >= 0."""
    return [Boundary(Fraction(0), False)]


def threshold_boundaries(thresholds) -> list[Boundary]:
    """MultiThreshold: code = count(v >= t)."""
    return [Boundary(Fraction(float(t)), False) for t in thresholds]


@dataclass(frozen=True)
class ChannelThresholds:
    thresholds: list[int]
    negate: bool            # the accumulator of this channel is negated (its weights flip)


def channel_thresholds(alpha: float, k: float, e: float, relu: bool, bounds: list[Boundary],
                       acc_bound: int) -> ChannelThresholds:
    """Integer thresholds on ``acc`` (or ``-acc`` when ``negate``) for one channel
    whose real value is ``v = alpha * (acc + k) + e``.

    ``acc_bound`` bounds ``|acc|``; a boundary that always holds becomes
    ``-acc_bound - 1`` and one that never holds ``acc_bound + 1``."""
    a, k, e = Fraction(float(alpha)), Fraction(float(k)), Fraction(float(e))
    always, never = -acc_bound - 1, acc_bound + 1
    negate = a < 0
    out = []
    for bd in bounds:
        if relu and (bd.value < 0 or (bd.value == 0 and not bd.strict)):
            out.append(always)          # relu(v) >= 0 reaches it whatever v is
            continue
        if a == 0:
            out.append(always if bd.holds(e) else never)
            continue
        r = (bd.value - e) / a - k
        if a > 0:
            t = math.floor(r) + 1 if bd.strict else math.ceil(r)
        else:
            t = 1 - math.ceil(r) if bd.strict else -math.floor(r)
        out.append(min(max(t, always), never))
    return ChannelThresholds(out, negate)
