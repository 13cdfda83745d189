"""Inputs that are not wafer maps of a known class, to measure the reject option.

Each group is uint8 model input [N][S][S][1], as the host would send it:

- ``noise``: photo-like images (smoothed random grey levels);
- ``gradient``: linear ramps at random angles;
- ``empty``: a grid with no die (all 0) and a full square grid of passing dies
  (no wafer outline);
- ``pattern``: round wafers with patterns outside the nine classes (a
  checkerboard of failing blocks, regular stripes), through the host's
  preprocessing.

Pure numpy; seeded.
"""
from __future__ import annotations

import numpy as np

GROUPS = ("noise", "gradient", "empty", "pattern")


def _photo(rng, size: int) -> np.ndarray:
    # Smooth grey levels: a coarse random image, bilinearly enlarged, plus grain.
    m = int(rng.integers(3, 9))
    small = rng.uniform(0, 255, (m, m))
    t = np.linspace(0, m - 1, size)
    rows = np.stack([np.interp(t, np.arange(m), r) for r in small])           # m x size
    img = np.stack([np.interp(t, np.arange(m), c) for c in rows.T], axis=1)   # size x size
    img = img + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _wafer(rng, n_dies: int) -> np.ndarray:
    yy, xx = np.mgrid[:n_dies, :n_dies] + 0.5
    r = np.hypot(yy - n_dies / 2, xx - n_dies / 2) / (n_dies / 2)
    return (r <= 1.0).astype(np.uint8)


def group(name: str, n: int, size: int, seed: int = 0) -> np.ndarray:
    from contract.preprocess import to_model_input

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 1), dtype=np.uint8)
    for i in range(n):
        if name == "noise":
            out[i, ..., 0] = _photo(rng, size)
        elif name == "gradient":
            a = rng.uniform(0, 2 * np.pi)
            yy, xx = np.mgrid[:size, :size] / size
            g = np.cos(a) * xx + np.sin(a) * yy
            out[i, ..., 0] = ((g - g.min()) / max(np.ptp(g), 1e-9) * 255).astype(np.uint8)
        elif name == "empty":
            d = int(rng.integers(20, 60))
            grid = np.zeros((d, d), np.uint8) if i % 2 == 0 else np.ones((d, d), np.uint8)
            out[i] = to_model_input(grid, size)
        elif name == "pattern":
            d = int(rng.integers(25, 60))
            m = _wafer(rng, d)
            yy, xx = np.mgrid[:d, :d]
            if i % 2 == 0:
                b = int(rng.integers(2, 5))
                fail = ((yy // b + xx // b) % 2 == 0)
            else:
                p = int(rng.integers(3, 6))
                fail = (xx % p == 0) if rng.random() < 0.5 else (yy % p == 0)
            m[(m == 1) & fail] = 2
            out[i] = to_model_input(m, size)
        else:
            raise ValueError(f"unknown group {name!r}; known: {', '.join(GROUPS)}")
    return out


def all_groups(n: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {g: group(g, n, size, seed + k) for k, g in enumerate(GROUPS)}
