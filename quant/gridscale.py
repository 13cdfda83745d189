"""Grid-size augmentation for real wafer maps (``--grid-variants``).

Real WM-811K products range from 25x27 to over 200 dies across, and the
model sees them all at one input size: a 26-die grid is blown up almost
twice, a 90-die grid shrunk by max-pooling. Held-out accuracy by grid size
(``quant.grid_report``) is lowest at both ends. Each training map is
therefore also re-gridded to other die counts: the die-category map is
resampled by nearest neighbour to ``factor`` times its dies across, the
wafer still filling the frame, so a pattern keeps its place on the wafer
and only the die pitch changes. Then it goes through the host's
``to_model_input`` as every map does.
"""
from __future__ import annotations

import numpy as np

from contract.preprocess import pad_square, resize_nearest, to_model_input

# Re-gridded maps keep at least this many dies across (the file's smallest products are 25).
MIN_DIES = 16
SCALE = (0.6, 1.6)


def regrid(map2d: np.ndarray, factor: float) -> np.ndarray:
    """A die-category map resampled to ``factor`` times its dies across (square, centred)."""
    sq = pad_square(np.asarray(map2d))
    n = max(MIN_DIES, int(round(sq.shape[0] * factor)))
    return resize_nearest(sq, n)


def variants(maps, plain: np.ndarray, size: int, n: int, seed: int, scale=SCALE) -> np.ndarray:
    """uint8 [N][n + 1][size][size][1]: each map's model input as given
    (``plain``, [N][size][size][1]) and at ``n`` other die counts, the
    factors drawn log-uniform in ``scale``."""
    if len(maps) != len(plain):
        raise ValueError(f"{len(maps)} raw maps for {len(plain)} model inputs")
    lo, hi = scale
    if not 0 < lo < hi:
        raise ValueError(f"grid scale {scale}: need 0 < low < high")
    rng = np.random.default_rng(seed)
    factors = np.exp(rng.uniform(np.log(lo), np.log(hi), size=(len(maps), n)))
    out = np.empty((len(maps), n + 1, size, size, 1), dtype=np.uint8)
    out[:, 0] = plain
    for i, m in enumerate(maps):
        for j, f in enumerate(factors[i]):
            out[i, j + 1] = to_model_input(regrid(m, f), size)
    return out
