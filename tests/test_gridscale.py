"""Grid-size augmentation (quant.gridscale, --grid-variants).

A re-gridded map is the same wafer at another die pitch: the wafer still
fills the frame, the share of failing dies holds, and the die count is the
factor times the original's. Checked on real WM-811K maps from the shared
numpy-2 sample. quant.fit draws one variant per map per draw, both in one
batch, and the CLI refuses re-gridding where there are no raw maps."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from contract.preprocess import pad_square  # noqa: E402
from quant import fit as fitmod  # noqa: E402
from quant import gridscale  # noqa: E402
from quant import train as tr  # noqa: E402
from quant.datasets import wm811k  # noqa: E402
from quant.traindata import preprocess  # noqa: E402
from shared_data import REAL_NP2, require  # noqa: E402


@pytest.fixture(scope="module")
def real():
    loaded = wm811k.load(require(REAL_NP2), n_classes=9, size=None, seed=0)
    return loaded.train.maps[:40], loaded.train.labels[:40]


def _extent(m):
    """Rows and columns that hold a die, as fractions of the side."""
    rows, cols = np.flatnonzero((m > 0).any(1)), np.flatnonzero((m > 0).any(0))
    n = m.shape[0]
    return np.array([rows[0], rows[-1] + 1, cols[0], cols[-1] + 1]) / n


@pytest.mark.parametrize("factor", [0.6, 0.8, 1.3, 1.6])
def test_a_regridded_wafer_keeps_its_place_and_its_failing_share(real, factor):
    for m in real[0]:
        sq = pad_square(m)
        r = gridscale.regrid(m, factor)
        assert r.shape == (max(gridscale.MIN_DIES, round(sq.shape[0] * factor)),) * 2
        assert set(np.unique(r)) <= {0, 1, 2}
        # the wafer's outline moves by less than one die of either grid
        tol = 1.0 / min(sq.shape[0], r.shape[0]) + 1e-9
        assert np.all(np.abs(_extent(r) - _extent(sq)) <= tol)
        fail = lambda a: (a == 2).sum() / (a > 0).sum()  # noqa: E731
        assert abs(fail(r) - fail(sq)) < 0.05


def test_regridding_never_goes_under_the_smallest_grid():
    m = np.ones((26, 26), np.uint8)
    assert gridscale.regrid(m, 0.3).shape == (gridscale.MIN_DIES, gridscale.MIN_DIES)


def test_variants_put_the_plain_map_first_and_repeat_by_seed(real):
    maps, _ = real
    plain = preprocess(maps, 32)
    v = gridscale.variants(maps, plain, 32, 3, seed=5)
    assert v.shape == (len(maps), 4, 32, 32, 1) and v.dtype == np.uint8
    np.testing.assert_array_equal(v[:, 0], plain)
    np.testing.assert_array_equal(v, gridscale.variants(maps, plain, 32, 3, seed=5))
    assert not np.array_equal(v, gridscale.variants(maps, plain, 32, 3, seed=6))
    # the other variants are other pictures of the same wafers, not copies (a
    # factor near 1, or a small grid blown up and pooled back, can give the same)
    same = sum(np.array_equal(v[i, 0], v[i, j]) for i in range(len(maps)) for j in (1, 2, 3))
    assert same <= len(maps) * 3 // 10
    with pytest.raises(ValueError, match="raw maps"):
        gridscale.variants(maps[:3], plain, 32, 3, seed=5)
    with pytest.raises(ValueError, match="0 < low < high"):
        gridscale.variants(maps, plain, 32, 3, seed=5, scale=(1.2, 0.8))


class _Seen(torch.nn.Module):
    """A linear classifier that records each batch's per-row input means."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 2)
        self.rows = []

    def forward(self, x):
        self.rows.append(x.detach().flatten(1).mean(1))
        return self.fc(x.flatten(1))


def test_fit_draws_a_variant_per_map_and_mixes_them_in_a_batch():
    x = np.zeros((64, 2, 4, 4, 1), np.uint8)
    x[:, 1] = 255
    y = np.arange(64) % 2
    net = fitmod.fit(_Seen(), x, y, 2, seed=0, batch=32, augment="none")
    seen = [b > 0 for b in net.rows]     # variant 1 is the bright one
    assert all(0 < int(b.sum()) < len(b) for b in seen)
    assert fitmod.plain(x).shape == (64, 4, 4, 1) and fitmod.plain(x).max() == 0


def test_the_cli_refuses_regridding_without_a_real_pkl(tmp_path):
    with pytest.raises(SystemExit, match="--grid-variants .* --data FILE.pkl"):
        tr.main(["--grid-variants", "2", "--n-train", "40", "--n-test", "20", "--fp-epochs", "0",
                 "--qat-epochs", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        tr.parse_args(["--grid-scale", "1.5,0.5", "--out", str(tmp_path)])


def test_the_cli_refuses_regridding_with_generated_maps_before_reading_data(tmp_path, monkeypatch):
    def never(args):
        raise AssertionError("the data were read before the options were checked")

    monkeypatch.setattr(tr, "load_data", never)
    with pytest.raises(SystemExit, match="--grid-variants and --synth-maps"):
        tr.main(["--grid-variants", "1", "--synth-maps", "100", "--data", str(require(REAL_NP2)),
                 "--out", str(tmp_path)])


def test_the_variants_of_a_run_are_its_own_training_rows(tmp_path):
    """The raw maps are read a second time: variant 0 must be load_data's
    map of the same row, or the variants would belong to other labels."""
    from quant.traindata import load_data, regridded

    args = tr.parse_args(["--data", str(require(REAL_NP2)), "--size", "32", "--grid-variants", "2",
                          "--split-seed", "3", "--out", str(tmp_path)])
    x, y, _, _ = load_data(args)
    rows = np.arange(len(y))[::3]
    v = regridded(args, x[rows], rows)
    assert v.shape == (len(rows), 3, 32, 32, 1)
    raw = wm811k.load(REAL_NP2, n_classes=9, size=None, seed=3).train.maps
    np.testing.assert_array_equal(v[:, 0], preprocess([raw[i] for i in rows], 32))
