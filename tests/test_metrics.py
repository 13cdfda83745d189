"""quant.metrics on hand-made cases: confusion, summary, reject option, temperature."""
import numpy as np
import pytest

from quant import metrics


def test_confusion_and_summary_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, -1])          # one mistake, one rejected
    cm = metrics.confusion(y, p, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    s = metrics.summary(y, p, ("a", "b", "c"))
    assert s["n"] == 6 and s["accepted"] == 5
    assert s["accuracy"] == pytest.approx(4 / 5)
    pa, pb, pc = (s["per_class"][c] for c in "abc")
    assert pa["precision"] == 1.0 and pa["recall"] == 0.5 and pa["f1"] == pytest.approx(2 / 3)
    assert pb["precision"] == pytest.approx(2 / 3) and pb["recall"] == 1.0 and pb["f1"] == pytest.approx(0.8)
    assert pc["precision"] == 1.0 and pc["recall"] == 1.0 and pc["support"] == 1
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)


def test_macro_f1_ignores_absent_classes():
    y = np.array([0, 0, 1])
    s = metrics.summary(y, np.array([0, 0, 1]), ("a", "b", "c"))
    assert s["macro_f1"] == 1.0 and s["per_class"]["c"]["recall"] is None
    assert metrics.summary(y, np.full(3, -1), ("a", "b", "c"))["accuracy"] is None


def _logits(n=600, seed=0, k=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    margin = rng.uniform(0, 4, n)               # easy and hard examples
    lg = rng.normal(0, 1, (n, k))
    lg[np.arange(n), y] += margin
    return lg, y


def test_coverage_curve_monotonic():
    lg, y = _logits()
    curve = metrics.coverage_curve(metrics.softmax(lg), y)
    cov = [c["coverage"] for c in curve]
    assert cov[0] == 1.0 and all(a >= b for a, b in zip(cov, cov[1:]))
    thr = [c["threshold"] for c in curve]
    assert all(a <= b for a, b in zip(thr, thr[1:]))
    acc = [c["accuracy"] for c in curve]
    assert acc[-1] >= acc[0]                    # confident maps are the right ones more often


def test_calibrate_reject_reaches_target():
    lg, y = _logits(2000, seed=1)
    base = (lg.argmax(1) == y).mean()
    target = min(0.97, base + 0.1)
    rej = metrics.calibrate_reject(lg, y, target)
    pred = metrics.apply_reject(lg, rej)
    keep = pred >= 0
    assert (pred[keep] == y[keep]).mean() >= target - 1e-9
    assert rej["val_accuracy"] >= target and 0 < rej["val_coverage"] < 1
    assert keep.mean() == pytest.approx(rej["val_coverage"], abs=0.01)
    # a trivially reachable target accepts everything
    assert metrics.calibrate_reject(lg, y, 0.0)["val_coverage"] == 1.0


def test_fit_temperature_recovers_scaling():
    # Logits drawn from a calibrated model, then multiplied by 3 (over-confident):
    # the fitted temperature undoes the factor.
    rng = np.random.default_rng(2)
    n, k = 4000, 5
    true_lg = rng.normal(0, 2, (n, k))
    p = metrics.softmax(true_lg)
    y = np.array([rng.choice(k, p=row) for row in p])
    t = metrics.fit_temperature(3 * true_lg, y)
    assert t == pytest.approx(3.0, rel=0.15)


def test_softmax_rows_sum_to_one():
    p = metrics.softmax(np.array([[1000.0, 0.0], [1.0, 1.0]]), 2.0)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(p[1], [0.5, 0.5])
