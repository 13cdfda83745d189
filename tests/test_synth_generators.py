"""Mixed-pattern wafer maps (quant.synth) and buffer-zone images (quant.buffer_synth)."""
import numpy as np
import pytest

from quant import buffer_synth, synth
from contract.spec import WAFER_CLASSES
from shared_data import REAL_TRAIN, require


def test_mixture_table_is_mixedwm38():
    assert len(synth.MIXTURES) == 29 and len(synth.MIXED_COMBINATIONS) == 38
    sizes = [len(c) for c in synth.MIXTURES]
    assert (sizes.count(2), sizes.count(3), sizes.count(4)) == (13, 12, 4)
    for c in synth.MIXTURES:
        assert not {"Center", "Donut"} <= set(c) and not {"Edge-Loc", "Edge-Ring"} <= set(c)
        assert "Near-full" not in c and "Random" not in c


def test_mixed_dataset_labels_determinism_and_balance():
    maps, y, combo = synth.mixed_dataset(380, seed=7)
    assert maps.shape == (380, 52, 52) and maps.dtype == np.uint8 and set(np.unique(maps)) <= {0, 1, 2}
    assert y.shape == (380, 8) and y.dtype == np.uint8
    assert np.bincount(combo, minlength=38).tolist() == [10] * 38
    for row, k in zip(y, combo):
        names = [synth.MIXED_PATTERNS[j] for j in np.flatnonzero(row)]
        assert tuple(names) == synth.MIXED_COMBINATIONS[k]
    again = synth.mixed_dataset(380, seed=7)
    assert np.array_equal(maps, again[0]) and np.array_equal(y, again[1])
    assert not np.array_equal(maps, synth.mixed_dataset(380, seed=8)[0])
    # Patterns add fails: a wafer's fail share grows with its pattern count.
    share = ((maps == 2).sum((1, 2)) / (maps > 0).sum((1, 2)))
    k = y.sum(1)
    normal, single = share[k == 0].mean(), share[(k == 1) & (y[:, 5] == 0)].mean()
    assert normal < single < share[k == 3].mean() < share[k == 4].mean()


def test_mixed_patterns_show_where_expected():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:52, 0:52]
    r = np.hypot((yy + 0.5) / 26 - 1, (xx + 0.5) / 26 - 1)
    ring, centre = (r > 0.9) & (r <= 1), r < 0.15
    for _ in range(10):
        m = synth.mixed_map(("Center", "Edge-Ring"), rng, (52, 52))
        assert (m[centre] == 2).mean() > 0.5 and (m[ring] == 2).mean() > 0.5
    with pytest.raises(ValueError, match="unknown patterns"):
        synth.mixed_map(("none",), rng)
    assert synth.multi_hot(("Donut", "Scratch")).tolist() == [0, 1, 0, 0, 0, 0, 0, 1]


def test_single_maps_keep_variety():
    rng = np.random.default_rng(1)
    maps = [synth.wafer_map(c, rng) for c in WAFER_CLASSES for _ in range(20)]
    assert len({m.shape for m in maps}) > 20
    none = maps[-20:]
    rates = [(m == 2).sum() / (m > 0).sum() for m in none]
    assert max(rates) - min(rates) > 0.02  # yields differ from wafer to wafer
    assert synth.wafer_map("Loc", rng, shape=(30, 40)).shape == (30, 40)


# ------------------------------------------------------------- buffer zone


@pytest.fixture(scope="module")
def buffer_set():
    return buffer_synth.dataset(200, seed=11, size=96)


def test_buffer_layout_balance_determinism(buffer_set):
    x, y, t = buffer_set
    assert x.shape == (200, 96, 96) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y, minlength=4).tolist() == [50] * 4
    assert buffer_synth.BUFFER_CLASSES == ("Crack", "EMC", "Normal", "Notch")
    assert t["mask"].shape == x.shape and t["mold_edge"].shape == (200, 96)
    x2, y2, t2 = buffer_synth.dataset(200, seed=11, size=96)
    assert np.array_equal(x, x2) and np.array_equal(y, y2) and np.array_equal(t["mask"], t2["mask"])
    xs, _, _ = buffer_synth.dataset(8, seed=1, size=(64, 256))
    assert xs.shape == (8, 64, 256)
    with pytest.raises(ValueError, match="unknown"):
        buffer_synth.buffer_image("Scratch", np.random.default_rng(0))


def test_buffer_truth_matches_mask(buffer_set):
    x, y, t = buffer_set
    crack, emc = buffer_synth.BUFFER_CLASSES.index("Crack"), buffer_synth.BUFFER_CLASSES.index("EMC")
    for i in range(len(y)):
        m = t["mask"][i]
        if y[i] not in (crack, emc):
            assert not m.any() and t["crack_length"][i] == 0 and t["emc_depth"][i] == 0
            continue
        rows, cols = np.nonzero(m)
        if y[i] == crack:
            assert abs((cols.max() - cols.min()) - t["crack_dx"][i]) <= 1
            assert abs((rows.max() - rows.min()) - t["crack_dy"][i]) <= 1
            length = t["crack_length"][i]
            assert length >= 6 and length >= np.hypot(t["crack_dx"][i], t["crack_dy"][i]) - 1e-3
            # A 1-px rasterised line: at least its longer extent, at most a staircase.
            assert max(t["crack_dx"][i], t["crack_dy"][i]) <= m.sum() <= 2 * length + 4
            # Inside the buffer zone: below the mold edge, above the wafer edge.
            assert np.all(rows >= t["mold_edge"][i][cols]) and np.all(rows <= t["wafer_edge"][i][cols])
            # Crack pixels are darker than the silicon around them.
            assert x[i][m].mean() < np.median(x[i][(np.arange(96)[:, None] > t["mold_edge"][i] + 2)
                                                   & (np.arange(96)[:, None] < t["wafer_edge"][i] - 8)])
            assert t["emc_depth"][i] == 0
        else:
            depth_per_col = m.sum(0)
            assert depth_per_col.max() == t["emc_depth"][i] >= 2
            assert (depth_per_col > 0).sum() == t["emc_width"][i]
            top = np.ceil(t["mold_edge"][i]).astype(int)
            for c in np.flatnonzero(depth_per_col):  # contiguous from the mold edge down
                assert np.array_equal(np.flatnonzero(m[:, c]), top[c] + np.arange(depth_per_col[c]))
            assert np.all(rows < t["wafer_edge"][i][cols])
            assert t["crack_length"][i] == 0


def test_buffer_classes_differ_where_they_should(buffer_set):
    x, y, t = buffer_set
    notch = buffer_synth.BUFFER_CLASSES.index("Notch")
    # A notch darkens the strip just above the wafer edge; elsewhere it stays bright.
    above_edge = []
    for i in range(len(y)):
        e = np.floor(t["wafer_edge"][i]).astype(int) - 10
        above_edge.append(np.min([x[i][e[c], c] for c in range(96)]))
    above_edge = np.array(above_edge)
    assert np.median(above_edge[y == notch]) < 60 < np.median(above_edge[y != notch])


# ------------------------------------------- the real-calibrated profile

def test_wm811k_profile_matches_the_real_statistics():
    from quant.sim2real import map_stats

    maps, labels = synth.dataset(900, seed=4, profile="wm811k")
    assert all(m.dtype == np.uint8 and m.max() <= 2 for m in maps)
    got = map_stats(maps, labels)
    shapes = np.array([m.shape for m in maps])
    assert shapes[:, 0].max() > 100 and shapes[:, 0].min() < 30          # real grids: 22..212 rows
    # the default profile stays as it was: 26..60 rows
    d_shapes = np.array([m.shape for m in synth.dataset(90, seed=4)[0]])
    assert d_shapes[:, 0].min() >= 26 and d_shapes[:, 0].max() <= 60
    real = require(REAL_TRAIN)
    from quant.datasets import wm811k

    df = wm811k.read_frame(real).iloc[::4]                               # a slice: 1,199 maps
    d = wm811k.from_frame(df, n_classes=9)
    ref = map_stats(d.train.maps + d.test.maps, np.concatenate([d.train.labels, d.test.labels]))
    for c, v in ref["classes"].items():
        mine = got["classes"][c]
        # median share of failing dies within a factor 1.6 of the real one
        ratio = mine["fail_q10_50_90"][1] / v["fail_q10_50_90"][1]
        assert 1 / 1.6 < ratio < 1.6, (c, mine["fail_q10_50_90"], v["fail_q10_50_90"])
    assert abs(got["rows_q10_50_90"][1] - ref["rows_q10_50_90"][1]) <= 8
    # grid sizes per class: classes come on different products (Scratch on
    # large grids, Near-full on small ones), and the profile follows them
    for c, v in ref["classes"].items():
        mine = got["classes"][c]
        assert abs(mine["rows_q"][3] - v["rows_q"][3]) <= 0.2 * v["rows_q"][3] + 2, (c, mine["rows_q"], v["rows_q"])
        assert abs(mine["square_share"] - v["square_share"]) <= 0.2, (c, mine["square_share"], v["square_share"])
    order = lambda stats: sorted(stats["classes"], key=lambda c: stats["classes"][c]["rows_q"][3])
    assert order(got)[0] == order(ref)[0] == "Near-full"


def test_wm811k_profile_draws_grids_per_class_and_keeps_scratches_thin():
    rng = np.random.default_rng(7)
    scratch = [synth.wafer_map("Scratch", rng, profile="wm811k") for _ in range(120)]
    near = [synth.wafer_map("Near-full", rng, profile="wm811k") for _ in range(120)]
    rows_s, rows_n = np.median([m.shape[0] for m in scratch]), np.median([m.shape[0] for m in near])
    assert rows_s > rows_n + 8                     # real medians: 50 and 33 rows
    # a scratch is about one die wide whatever the grid (in real files it
    # is one die on 200-row grids too): area / length of the mask, in dies
    widths = []
    for _ in range(40):
        _, r, theta, yy, xx = synth._grid(rng, (200, 200), "wm811k")
        mask = synth._pattern_real("Scratch", rng, r, theta, yy, xx)
        pts = np.argwhere(mask).astype(float)
        if len(pts) < 20:
            continue
        axis = np.linalg.svd(pts - pts.mean(0), full_matrices=False)[2][0]
        proj = (pts - pts.mean(0)) @ axis
        widths.append(len(pts) / (proj.max() - proj.min() + 1))
    assert len(widths) > 20 and np.median(widths) < 2.5, np.median(widths)
    with pytest.raises(KeyError):
        synth._real_shape(rng, "Blob")
