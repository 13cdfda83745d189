"""quant.metrics on hand-made cases: confusion, summary, reject option, temperature."""
import numpy as np
import pytest

from quant import metrics
from shared_data import REAL_NP2, require


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
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)


def test_macro_f1_ignores_absent_classes():
    y = np.array([0, 0, 1])
    s = metrics.summary(y, np.array([0, 0, 1]), ("a", "b", "c"))
    assert s["macro_f1"] == 1.0 and s["per_class"]["c"]["recall"] is None
    assert s["balanced_accuracy"] == 1.0
    assert metrics.summary(y, np.full(3, -1), ("a", "b", "c"))["accuracy"] is None
    assert metrics.summary(y, np.full(3, -1), ("a", "b", "c"))["balanced_accuracy"] is None


def test_balanced_accuracy_is_what_an_equal_class_set_scores():
    # 90 maps of a common class, all right; 10 of a rare one, half wrong.
    y = np.array([0] * 90 + [1] * 10)
    p = np.array([0] * 90 + [1] * 5 + [0] * 5)
    s = metrics.summary(y, p, ("common", "rare"))
    assert s["accuracy"] == pytest.approx(0.95)
    assert s["balanced_accuracy"] == pytest.approx(0.75)
    # The same classifier on a set with ten of each: the rare class's recall
    # weighs as much as the common one's.
    yb = np.array([0] * 10 + [1] * 10)
    pb = np.array([0] * 10 + [1] * 5 + [0] * 5)
    assert metrics.summary(yb, pb, ("common", "rare"))["accuracy"] == pytest.approx(s["balanced_accuracy"])


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


# ------------------------------------------------ out-of-distribution reject

def _discs(n, size=32, seed=0):
    """Round 'wafer maps' as model input: pass dies, a few failing ones."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] + 0.5
    out = np.zeros((n, size, size, 1), np.uint8)
    for i in range(n):
        r = rng.uniform(0.8, 1.0) * size / 2
        disc = np.hypot(yy - size / 2, xx - size / 2) <= r
        img = np.where(disc, 128, 0).astype(np.uint8)
        img[disc & (rng.random((size, size)) < 0.1)] = 255
        out[i, ..., 0] = img
    return out


def test_input_features_by_hand():
    x = np.zeros((3, 8, 8, 1), np.uint8)
    x[1] = 128                                   # a full square grid of dies
    x[2, 2:6, 2:6] = 100                         # off-code grey pixels
    f = metrics.input_features(x)
    assert f["die"].tolist() == [0.0, 1.0, 0.25]
    assert f["off_code"].tolist() == [0.0, 0.0, 0.25]
    # the square's corners lie outside its inscribed circle: 1 - pi/4 of it roughly
    assert 0.15 < f["outside"][1] < 0.25 and f["outside"][0] == 0.0


def test_periodicity_by_hand():
    """A stripe of failing dies every 4th column puts the field's power in a
    few frequency peaks; isolated failing dies spread it; no or all failing: 0."""
    x = np.zeros((4, 32, 32), np.uint8)
    x[:, 4:28, 4:28] = 128
    x[0, 4:28, 4:28:4] = 255
    rng = np.random.default_rng(0)
    x[1, 4:28, 4:28][rng.random((24, 24)) < 0.15] = 255
    x[3, 4:28, 4:28] = 255
    p = metrics.input_features(x[..., None])["periodic"]
    assert p[0] > 0.1 and p[1] < 0.05 and p[2] == 0.0 and p[3] == 0.0


def test_periodic_patterns_rejected_and_real_maps_kept():
    """Calibrated on real WM-811K maps (the shared numpy-2 sample, outside
    reference), the periodicity limit sends the checkerboard and stripe wafers
    of ``quant.ood`` to review as out of distribution and keeps the real maps."""
    real = require(REAL_NP2)
    from quant import ood
    from quant.datasets import wm811k

    d = wm811k.load(real, n_classes=9, size=48, seed=0)
    x = np.concatenate([d.train.maps, d.test.maps])
    y = np.concatenate([d.train.labels, d.test.labels])
    lg = np.eye(9)[y] * 8.0
    rej = metrics.calibrate_reject(lg, y, 0.9, x_val=x[::2])
    kept = metrics.reject_reasons(lg[1::2], rej, x[1::2])
    assert sum(r is not None for r in kept) <= 0.03 * len(kept)
    pattern = ood.group("pattern", 60, 48, seed=11)
    why = metrics.reject_reasons(np.tile(lg[:1], (60, 1)), rej, pattern)
    assert sum(r == "out of distribution" for r in why) >= 54, why


def test_reject_reasons_turn_away_non_wafers_and_keep_maps():
    x_val = _discs(400)
    lg, y = _logits(400, seed=2)
    rej = metrics.calibrate_reject(lg, y, 0.9, x_val=x_val)
    assert {"min_energy", "input"} <= set(rej)
    why = metrics.reject_reasons(lg, rej, x_val)
    assert sum(r == "not a wafer map" for r in why) <= 0.02 * len(why)
    rng = np.random.default_rng(5)
    photo = rng.integers(0, 256, (4, 32, 32, 1)).astype(np.uint8)
    empty = np.zeros((2, 32, 32, 1), np.uint8)
    grid = np.full((2, 32, 32, 1), 128, np.uint8)
    x_bad = np.concatenate([photo, empty, grid])
    confident = np.tile([[20.0, 0, 0, 0]], (len(x_bad), 1))
    assert metrics.reject_reasons(confident, rej, x_bad) == ["not a wafer map"] * len(x_bad)
    assert (metrics.apply_reject(confident, rej, x_bad) == metrics.REVIEW).all()
    # without inputs only the logit tests apply: confident logits pass, flat ones do not
    assert metrics.reject_reasons(confident[:1], rej) == [None]
    flat = np.full((1, 4), lg.min() - 5.0)
    assert metrics.reject_reasons(flat, rej) == ["out of distribution"]


def test_old_reject_dicts_still_apply():
    lg, y = _logits(300, seed=3)
    rej = metrics.calibrate_reject(lg, y, 0.9)
    old = {k: rej[k] for k in ("temperature", "threshold")}
    p = metrics.softmax(lg, old["temperature"])
    want = np.where(p.max(1) < old["threshold"], metrics.REVIEW, p.argmax(1))
    np.testing.assert_array_equal(metrics.apply_reject(lg, old), want)


def test_metrics_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys, quant.metrics, quant.ood, numpy as np; "
            "quant.ood.all_groups(2, 16); assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
