"""quant.cam: the CAM formula on an integer model, size measurements, MAPE."""
import numpy as np
import pytest

from quant import buffer_synth, cam, defect_size
from contract.intmodel import random_model
from contract.zoo import BUFFER_CLASSES, buffer_spec


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
    assert defect_size.extent(m) == (17.0, 0.0)
    m[5:15, 20] = True                      # plus a vertical leg: dy 9
    assert defect_size.crack_size(m) == {"crack_dx": 17.0, "crack_dy": 9.0, "crack_length": float(np.hypot(17, 9))}
    assert defect_size.extent(np.zeros((8, 8), bool)) == (0.0, 0.0)


def test_emc_depth_exact_on_generator_masks():
    rng = np.random.default_rng(4)
    for _ in range(20):
        img, t = buffer_synth.buffer_image("EMC", rng, 64)
        got = defect_size.emc_depth(t["mask"], t["mold_edge"])["emc_depth"]
        assert got == t["emc_depth"]


def test_crack_extent_on_generator_masks_within_rounding():
    rng = np.random.default_rng(5)
    for _ in range(20):
        img, t = buffer_synth.buffer_image("Crack", rng, 64)
        s = defect_size.crack_size(t["mask"])
        assert abs(s["crack_dx"] - t["crack_dx"]) <= 1.0 and abs(s["crack_dy"] - t["crack_dy"]) <= 1.0


def test_mold_edge_found_in_image():
    rng = np.random.default_rng(6)
    errs = []
    for _ in range(10):
        img, t = buffer_synth.buffer_image("Normal", rng, 64)
        errs.append(np.abs(defect_size.mold_edge(img) - t["mold_edge"]).mean())
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
    raw = defect_size.crack_size(cams[np.nonzero(y == k)[0][0], k] > 0)
    res = cam.evaluate(cams, x, y, y, t, BUFFER_CLASSES, cal)
    assert cal.correct(raw)["crack_dx"] < raw["crack_dx"]
    assert res["crack_dx"]["n"] == int((y == k).sum())
    assert res["crack_dx"]["mape_ge4"] < 15


def test_mold_edge_ignores_an_invasion_at_one_side():
    """A wide EMC invasion left out of ``exclude`` (the CAM missed it) must not
    tilt the fitted mold edge: the fit takes the upper envelope, with bounded tilt."""
    rng = np.random.default_rng(11)
    errs = []
    while len(errs) < 12:
        img, t = buffer_synth.buffer_image("EMC", rng, 64)
        if t["emc_width"] < 16 or t["emc_depth"] < 6:
            continue
        errs.append(np.abs(defect_size.mold_edge(img) - t["mold_edge"]).max())
    assert np.median(errs) < 3.0, errs


def test_components_match_a_flood_fill():
    rng = np.random.default_rng(12)
    for _ in range(20):
        m = rng.random((14, 17)) < 0.35
        labels, n = defect_size._components(m)
        seen, count = np.zeros_like(m), 0
        for r, c in zip(*np.nonzero(m)):
            if seen[r, c]:
                continue
            count += 1
            stack, comp = [(r, c)], []
            seen[r, c] = True
            while stack:
                a, b = stack.pop()
                comp.append((a, b))
                for da in (-1, 0, 1):
                    for db in (-1, 0, 1):
                        aa, bb = a + da, b + db
                        if 0 <= aa < 14 and 0 <= bb < 17 and m[aa, bb] and not seen[aa, bb]:
                            seen[aa, bb] = True
                            stack.append((aa, bb))
            ids = {labels[a, b] for a, b in comp}
            assert len(ids) == 1 and 0 not in ids          # one label per flood-filled component
        assert n == count and (labels[~m] == 0).all()


def test_guided_crack_grows_from_a_seed_beside_it():
    """The CAM region says where, the pixels say how long: a small seed on one
    end of the crack (or a map that peaks beside it) still gives the crack's extent."""
    rng = np.random.default_rng(13)
    hits = 0
    for _ in range(12):
        img, t = buffer_synth.buffer_image("Crack", rng, 64)
        rows, cols = np.nonzero(t["mask"])
        seed = np.zeros_like(t["mask"])
        seed[rows[0], cols[0]] = True                     # one pixel of the crack
        s = defect_size.guided(seed, img, "Crack")
        hits += abs(s["crack_dx"] - t["crack_dx"]) <= 2 and abs(s["crack_dy"] - t["crack_dy"]) <= 2
        # a map whose binarized region misses the crack by 8 px, peaking nearest to it
        far = np.zeros(img.shape)
        far[np.clip(rows + 8, 0, 63), cols] = 1.0
        far[rows, cols] = 0.5
        s_far = defect_size.guided(far >= 1.0, img, "Crack", cam_up=far)
        assert s_far["crack_dx"] > 0 or t["crack_dx"] < 1
    assert hits >= 10, hits


def test_guided_emc_depth_from_a_partial_region():
    rng = np.random.default_rng(14)
    errs = []
    for _ in range(16):
        img, t = buffer_synth.buffer_image("EMC", rng, 64)
        cols = np.nonzero(t["mask"].any(0))[0]
        region = np.zeros_like(t["mask"])
        region[:, cols[len(cols) // 2]] = True              # one column of the invasion
        got = defect_size.guided(region, img, "EMC")["emc_depth"]
        errs.append(abs(got - t["emc_depth"]) / t["emc_depth"])
    assert np.median(errs) < 0.15, errs


def test_calibration_never_does_worse_than_identity_or_the_fitted_line():
    # Exact measurements but for two gross misses, which pull a least-squares
    # line away from the rest: per quantity the calibration keeps whichever
    # of identity and line has the lower MAPE on the data it was fitted on.
    x, y, t = buffer_synth.dataset(40, seed=9, size=48)
    k = BUFFER_CLASSES.index("Crack")
    cams = np.zeros((len(x), len(BUFFER_CLASSES), 48, 48))
    idx = np.nonzero(y == k)[0]
    for j, i in enumerate(idx):
        cams[i, k] = t["mask"][i]
        if j < 2:
            cams[i, k, 2:46, 2:46] = 1.0           # a CAM lighting everything
    cal = cam.calibrate(cams, x, y, t, BUFFER_CLASSES, fracs=(0.5,))
    raw = [cam.measure(cams[i, k], x[i], "Crack", 0.5) for i in idx]
    for q in ("crack_dx", "crack_dy", "crack_length"):
        r, tq = np.array([m[q] for m in raw]), t[q][idx]
        a, b = cal.linear[q]
        la, lb = cam._fit_line(r, tq)
        chosen = cam.mape(tq, a * r + b)
        assert chosen <= cam.mape(tq, r) + 1e-9 and chosen <= cam.mape(tq, la * r + lb) + 1e-9
        assert (a, b) in ((1.0, 0.0), (la, lb))


def test_image_method_ignores_the_cam_and_guided_follows_it():
    """The ablation measures the image alone: any CAM gives the same sizes. The
    guided method measures what its region points at: with a resin-bleed-like
    dark line added beside the crack, a region on the crack keeps the crack's
    extent while the image alone takes in both lines."""
    rng = np.random.default_rng(21)
    img, t = buffer_synth.buffer_image("Crack", rng, 64)
    rows, cols = np.nonzero(t["mask"])
    a = cam.measure(rng.random((64, 64)), img, "Crack", 0.5, "image")
    b = cam.measure(np.zeros((64, 64)), img, "Crack", 0.5, "image")
    assert a == b
    decoy = img.astype(np.int16)
    r0 = int(np.ceil(t["mold_edge"].max())) + 4
    c0 = 2 if cols.min() > 32 else 50
    decoy[r0, c0:c0 + 12] -= 80                                 # a 12-px dark line elsewhere
    decoy = np.clip(decoy, 0, 255).astype(np.uint8)
    on_crack = np.zeros((64, 64))
    on_crack[rows, cols] = 1.0
    g = cam.measure(on_crack, decoy, "Crack", 0.5, "guided")
    alone = cam.measure(on_crack, decoy, "Crack", 0.5, "image")
    assert abs(g["crack_dx"] - t["crack_dx"]) <= 2 and abs(g["crack_dy"] - t["crack_dy"]) <= 2
    assert alone["crack_dx"] > g["crack_dx"] + 5
    with pytest.raises(ValueError, match="unknown size method"):
        cam.measure(on_crack, img, "Crack", 0.5, "blob")
