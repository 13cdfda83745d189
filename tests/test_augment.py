"""quant.augment: the training-time symmetries, each drawing only its own
views; rotate's off-grid turns."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from contract.spec import CNNSpec  # noqa: E402
from quant import augment as aug  # noqa: E402
from quant import fit as fitmod  # noqa: E402
from quant import train as tr  # noqa: E402
from quant.model import GraphNet  # noqa: E402

SMALL = CNNSpec.uniform(4, 4, channels=(4, 8, 8))


def _views(x):
    """The eight dihedral views of a [N][C][H][W] batch."""
    out = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(2, 3))
        out += [r, torch.flip(r, dims=(3,))]
    return out


def _view_of(x, y):
    """Which of the eight views of map ``x`` [C][H][W] is ``y``."""
    return next(i for i, v in enumerate(_views(x[None])) if torch.equal(v[0], y))


def test_augment_modes_draw_only_their_symmetries():
    x = torch.arange(6 * 25, dtype=torch.float32).reshape(6, 1, 5, 5)   # no symmetry of its own
    torch.manual_seed(0)
    dihedral_modes = [m for m in aug.AUGMENTS if m != "rotate"]   # rotate: its own test
    seen = {mode: set() for mode in dihedral_modes}
    for mode in dihedral_modes:
        for _ in range(64):
            y = aug.augment(x, mode)
            seen[mode].add(tuple(_view_of(a, b) for a, b in zip(x, y)))
    one_a_batch = lambda views: {v[0] for v in views if len(set(v)) == 1}   # noqa: E731
    for mode in ("none", "hflip", "dihedral"):
        assert all(len(set(v)) == 1 for v in seen[mode]), mode   # one view for the whole batch
    assert one_a_batch(seen["none"]) == {0}
    assert one_a_batch(seen["hflip"]) == {0, 1}            # the buffer zone's radial axis never turns
    assert one_a_batch(seen["dihedral"]) == set(range(8))
    each = seen["dihedral-each"]
    assert {i for v in each for i in v} == set(range(8))
    assert sum(len(set(v)) > 1 for v in each) > 48          # maps of one batch take their own views
    flat = torch.zeros(3, 1, 4, 6)                          # not square: no turns, as for dihedral
    assert aug.augment(flat, "dihedral-each").shape == flat.shape
    with pytest.raises(ValueError, match="unknown augmentation"):
        fitmod.fit(GraphNet(SMALL), np.zeros((4, 42, 42, 1), np.uint8), np.zeros(4, np.int64), 1, 0,
                   augment="rot45")


def _disc(n=48):
    """A round wafer of passing dies (code 128) with a failing left edge (255)."""
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2)
    m = np.where(r < n / 2 - 2, 128, 0)
    m[(r < n / 2 - 2) & (xx < n // 5)] = 255
    return torch.tensor(m, dtype=torch.float32)[None, None] / 256


def test_rotate_turns_off_grid_and_keeps_the_die_codes():
    torch.manual_seed(0)
    x = _disc().repeat(64, 1, 1, 1)
    y = aug.rotate(x, share=1.0)
    assert set(torch.unique(y * 256).tolist()) <= {0.0, 128.0, 255.0}   # nearest: no blends
    # a turned disc stays a disc: the die count moves by rounding only
    dies = (y > 0).sum(dim=(1, 2, 3)).float()
    assert (abs(dies - float((x[0] > 0).sum())) < 0.02 * float((x[0] > 0).sum())).all()
    # (almost) every map lands on none of the eight dihedral views
    dihedral = [v[0] for v in _views(x[:1])]
    on_grid = sum(any(torch.equal(v, a) for v in dihedral) for a in y)
    assert on_grid < 8
    assert torch.equal(aug.rotate(x, share=0.0), x)                 # angle 0: as given
    # share: about half the maps turn
    torch.manual_seed(1)
    turned = (aug.rotate(x) != x).flatten(1).any(1).float().mean()
    assert 0.3 < float(turned) < 0.7


def test_rotate_mode_adds_turns_to_the_dihedral_ones():
    torch.manual_seed(0)
    x = _disc().repeat(16, 1, 1, 1)
    outs = [aug.augment(x, "rotate") for _ in range(8)]
    assert all(o.shape == x.shape for o in outs)
    assert any(len({tuple(m.flatten().tolist()) for m in o}) > 1 for o in outs)  # maps differ
    flat = torch.zeros(3, 1, 4, 6)                          # not square: the mirror only
    assert aug.augment(flat, "rotate").shape == flat.shape
    assert tr.parse_args(["--out", "x", "--augment", "rotate"]).augment == "rotate"
