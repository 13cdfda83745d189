"""quant.cam: the CAM formula on an integer model, size measurements, MAPE."""
import numpy as np
import pytest

from quant import buffer_synth, cam
from quant.intmodel import random_model
from quant.zoo import BUFFER_CLASSES, buffer_spec


def test_cam_of_integer_model_equals_formula():
    im = random_model(buffer_spec(4, 4, in_size=32, width=4), seed=3)
    k, c = im.weights["fc.w"].shape
    rng = np.random.default_rng(0)
    im.weights["fc.w"] = rng.integers(-8, 8, size=(k, c)).astype(np.int8)   # known weights
    x, _, _ = buffer_synth.dataset(3, seed=1, size=32)
    cams, logits = cam.int_cams(im, x)
    feats = im.run(x)["cam"]
    assert cams.shape == (3, k, feats.shape[1], feats.shape[2])
    for n in range(3):
        for kk in range(k):
            for h in range(feats.shape[1]):
                for w in range(feats.shape[2]):
                    want = sum(int(im.weights["fc.w"][kk, ch]) * int(feats[n, h, w, ch]) for ch in range(c))
                    assert cams[n, kk, h, w] == want
    np.testing.assert_array_equal(logits, im.forward(x))


def test_cam_from_features_hand_made():
    f = np.zeros((1, 2, 2, 3), np.int64)
    f[0, 0, 1] = (1, 2, 3)
    f[0, 1, 0] = (4, 0, 1)
    w = np.array([[1, -1, 2], [0, 3, 0]])
    out = cam.cam_from_features(f, w)
    np.testing.assert_array_equal(out[0, 0], [[0, 1 - 2 + 6], [4 + 2, 0]])
    np.testing.assert_array_equal(out[0, 1], [[0, 6], [0, 0]])
    with pytest.raises(ValueError):
        cam.cam_from_features(f, w[:, :2])


def test_upsample_and_binarize():
    m = np.zeros((4, 4))
    m[1, 2] = 8.0
    up = cam.upsample(m, 16)
    assert up.shape == (16, 16)
    assert np.unravel_index(up.argmax(), up.shape) in {(5, 9), (5, 10), (6, 9), (6, 10)}
    np.testing.assert_allclose(cam.upsample(np.ones((4, 4)), 16), 1.0)
    b = cam.binarize(up, 0.5)
    half = 0.5 * up.max()
    assert b.any() and b[up >= half].all() and not b[up < half].any()
    assert not cam.binarize(-np.ones((4, 4)), 0.5).any()


def test_extent_exact_on_hand_made_masks():
    m = np.zeros((32, 32), bool)
    m[5, 3:21] = True                       # horizontal line: dx 17, dy 0
    assert cam.extent(m) == (17.0, 0.0)
    m[5:15, 20] = True                      # plus a vertical leg: dy 9
    assert cam.crack_size(m) == {"crack_dx": 17.0, "crack_dy": 9.0, "crack_length": float(np.hypot(17, 9))}
    assert cam.extent(np.zeros((8, 8), bool)) == (0.0, 0.0)


def test_emc_depth_exact_on_generator_masks():
    rng = np.random.default_rng(4)
    for _ in range(20):
        img, t = buffer_synth.buffer_image("EMC", rng, 64)
        got = cam.emc_depth(t["mask"], t["mold_edge"])["emc_depth"]
        assert got == t["emc_depth"]


def test_crack_extent_on_generator_masks_within_rounding():
    rng = np.random.default_rng(5)
    for _ in range(20):
        img, t = buffer_synth.buffer_image("Crack", rng, 64)
        s = cam.crack_size(t["mask"])
        assert abs(s["crack_dx"] - t["crack_dx"]) <= 1.0 and abs(s["crack_dy"] - t["crack_dy"]) <= 1.0


def test_mold_edge_found_in_image():
    rng = np.random.default_rng(6)
    errs = []
    for _ in range(10):
        img, t = buffer_synth.buffer_image("Normal", rng, 64)
        errs.append(np.abs(cam.mold_edge(img) - t["mold_edge"]).mean())
    assert np.median(errs) < 1.5


def test_mape():
    assert cam.mape([10, 20], [11, 18]) == pytest.approx(10.0)
    assert cam.mape([0, 10], [5, 15]) == pytest.approx(50.0)      # zero truths are skipped
    assert np.isnan(cam.mape([0], [1]))


def test_fit_line_recovers_a_linear_bias():
    true = np.array([3.0, 5.0, 10.0, 20.0, 31.0])
    a, b = cam._fit_line(2 * true + 4, true)
    assert a == pytest.approx(0.5) and b == pytest.approx(-2.0)


def test_calibration_recovers_a_dilation():
    # A "CAM" that is the truth mask dilated by 2 px: extents are 4 px too large;
    # calibration finds the offset and the corrected lengths are close to the truth.
    x, y, t = buffer_synth.dataset(24, seed=7, size=48)
    cams = np.zeros((len(x), len(BUFFER_CLASSES), 48, 48))
    k = BUFFER_CLASSES.index("Crack")
    for i in np.nonzero(y == k)[0]:
        m = t["mask"][i]
        p = np.pad(m, 2)
        cams[i, k] = np.any([p[2 + dy:50 + dy, 2 + dx:50 + dx] for dy in range(-2, 3)
                             for dx in range(-2, 3)], axis=0)
    cal = cam.calibrate(cams, x, y, t, BUFFER_CLASSES, fracs=(0.5,))
    raw = cam.crack_size(cams[np.nonzero(y == k)[0][0], k] > 0)
    res = cam.evaluate(cams, x, y, y, t, BUFFER_CLASSES, cal)
    assert cal.correct(raw)["crack_dx"] < raw["crack_dx"]
    assert res["crack_dx"]["n"] == int((y == k).sum())
    assert res["crack_dx"]["mape_ge4"] < 15
