"""The importer's thresholds are the exact integers: count(acc >= T) equals the
quantizer applied to alpha * (acc + k) + e in exact rational arithmetic, for
every accumulator value, including ties (round half to even), negative scales
(flipped channels), ReLU and accumulators sitting exactly on a boundary."""
import math
from fractions import Fraction

import numpy as np
import pytest

from quant.onnx_import.thresholds import (channel_thresholds, quant_boundaries, sign_boundary,
                                          threshold_boundaries)


def _rnd(u: Fraction, mode: str) -> int:
    return {"ROUND": round, "FLOOR": math.floor, "CEIL": math.ceil}[mode](u)   # round(): half to even


def _reference(v: Fraction, scale, zp, q_min, q_max, mode) -> int:
    q = min(max(_rnd(v / Fraction(scale) + Fraction(zp), mode), q_min), q_max)
    return q - q_min


def _count(acc: int, ch) -> int:
    a = -acc if ch.negate else acc
    return sum(a >= t for t in ch.thresholds)


CASES = [  # alpha, k, e, relu, scale, zp, q_min, q_max, mode
    (0.5, 0, 0.0, False, 1.0, 0, -1, 1, "ROUND"),          # v hits every m - 1/2 tie
    (-0.5, 0, 0.0, False, 1.0, 0, -1, 1, "ROUND"),         # negative scale: the channel flips
    (0.25, -3.5, 0.125, False, 0.5, 0, -2, 1, "ROUND"),    # bipolar-input offset (halves)
    (-0.75, 2.5, -0.3, False, 0.25, 1, 0, 3, "ROUND"),
    (0.37, 0, -1.1, True, 0.5, 0, 0, 15, "ROUND"),         # ReLU then unsigned 4-bit
    (0.5, 1, 0.0, False, 1.0, 0, 0, 7, "FLOOR"),
    (-0.5, 1, 0.0, False, 1.0, 0, 0, 7, "CEIL"),
    (1 / 3, 0.5, 0.1, False, 0.2, 0, -127, 127, "ROUND"),  # non-dyadic scales
    (0.0, 0, 0.7, False, 1.0, 0, -1, 1, "ROUND"),          # constant output
]


@pytest.mark.parametrize("alpha,k,e,relu,scale,zp,q_min,q_max,mode", CASES)
def test_thresholds_equal_the_quantizer_on_every_accumulator(alpha, k, e, relu, scale, zp, q_min,
                                                             q_max, mode):
    bound = 300
    ch = channel_thresholds(alpha, k, e, relu, quant_boundaries(scale, zp, q_min, q_max, mode), bound)
    assert ch.negate == (alpha < 0)
    assert ch.thresholds == sorted(ch.thresholds)
    for acc in range(-bound, bound + 1):
        v = Fraction(alpha) * (acc + Fraction(k)) + Fraction(e)
        if relu:
            v = max(v, Fraction(0))
        assert _count(acc, ch) == _reference(v, scale, zp, q_min, q_max, mode), acc


def test_sign_and_multithreshold_boundaries_are_non_strict():
    # bipolar: +1 exactly when v >= 0; v = 2 * (acc - 9) is 0 at acc 9
    ch = channel_thresholds(2.0, -9, 0.0, False, sign_boundary(), 100)
    assert ch.thresholds == [9]
    ch = channel_thresholds(-2.0, -9, 0.0, False, sign_boundary(), 100)   # 1 iff acc <= 9
    assert ch.negate and ch.thresholds == [-9]
    ch = channel_thresholds(1.0, 0, 0.0, False, threshold_boundaries([-2.5, 0.0, 3.0]), 100)
    assert ch.thresholds == [-2, 0, 3]


def test_each_threshold_is_the_least_accumulator_that_reaches_its_boundary():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.choice([-1, 1]) * rng.uniform(0.1, 2)
        k, e = rng.integers(-40, 40) / 2, rng.uniform(-5, 5)
        ch = channel_thresholds(a, k, e, False, sign_boundary(), 1000)
        t = -ch.thresholds[0] if ch.negate else ch.thresholds[0]
        step = -1 if ch.negate else 1        # the direction in which v rises
        v = lambda acc: Fraction(a) * (acc + Fraction(k)) + Fraction(e)
        assert v(t) >= 0 > v(t - step)


def test_unreachable_boundaries_saturate_at_the_accumulator_bound():
    ch = channel_thresholds(1.0, 0, 1e6, False, quant_boundaries(1.0, 0, -1, 1, "ROUND"), 50)
    assert ch.thresholds == [-51, -51]
    ch = channel_thresholds(1.0, 0, -1e6, False, quant_boundaries(1.0, 0, -1, 1, "ROUND"), 50)
    assert ch.thresholds == [51, 51]
    assert np.all(np.diff(ch.thresholds) >= 0)
