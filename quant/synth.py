"""Synthetic WM-811K-style wafer maps: the nine single classes and
MixedWM38-style mixtures of two to four defect patterns.

A map is a 2-D uint8 array of die categories, as in LSWMD.pkl:
0 = no die (outside the wafer), 1 = pass, 2 = fail. Each map has its own die
grid (rows x cols, a round wafer inside it), its own yield (background fail
rate), its own pattern position, size and intensity, and its own nuisance
noise, so that a model cannot key on one geometry:

* background fails: independent dies at a per-wafer rate (skewed to high
  yield: most wafers have 0-3 % random fails, a few up to 6 %);
* clustered noise: on half the wafers, one to three small fail clusters
  (a few dies: particles, probe marks) that are not a pattern;
* edge effects: on some wafers a sparse rim of fails on the outermost dies
  (edge yield loss), too thin and sparse to be Edge-Ring.

Mixtures follow MixedWM38: Center/Donut exclude each other, so do
Edge-Loc/Edge-Ring; Near-full and Random occur only alone. Multi-hot labels
are uint8 [N][8] in the order ``MIXED_PATTERNS`` = WAFER_CLASSES[:8]
(C, D, EL, ER, L, NF, R, S), all zeros for a normal wafer.

Everything is drawn from one seeded ``numpy.random.Generator``: the same seed
gives the same maps.
"""
from __future__ import annotations

from itertools import product

import numpy as np

from contract.spec import WAFER_CLASSES

MIXED_PATTERNS = WAFER_CLASSES[:8]


def _mixtures() -> tuple[tuple[str, ...], ...]:
    out = []
    for c, e, loc, s in product(("", "Center", "Donut"), ("", "Edge-Loc", "Edge-Ring"),
                                ("", "Loc"), ("", "Scratch")):
        combo = tuple(x for x in (c, e, loc, s) if x)
        if len(combo) >= 2:
            out.append(combo)
    return tuple(sorted(out, key=lambda t: (len(t), [MIXED_PATTERNS.index(x) for x in t])))


#: The 29 MixedWM38 mixtures (13 of two, 12 of three, 4 of four patterns).
MIXTURES = _mixtures()
#: All 38 MixedWM38 classes: normal, the eight single patterns, the mixtures.
MIXED_COMBINATIONS = ((),) + tuple((p,) for p in MIXED_PATTERNS) + MIXTURES


#: Die-grid rows per class in the real WM-811K file (quantiles 0, 10, 25, 50,
#: 75, 90 and 100 %), the share of square grids and the spread (std of the
#: log) of cols/rows on the others. Classes come on different products: Donut
#: and Random on 35..45-row grids, Scratch on large ones, Center and Edge-Loc
#: often on small ones. Measured on the training rows of
#: ../shared/data/wm811k-real-train.pkl (3,835 maps; the held-out test rows
#: not used) by ``python -m quant.sim2real --stats-only`` (``rows_q``,
#: ``square_share``, ``log_aspect_std``).
CLASS_ROWS_Q = {
    "Center": (22, 25, 25, 39, 41, 53, 212),
    "Donut": (27, 35, 35, 41, 41, 45, 87),
    "Edge-Loc": (22, 26, 32, 39, 52, 60, 133),
    "Edge-Ring": (26, 34, 38, 53, 63, 63, 121),
    "Loc": (25, 26, 30, 39, 44, 60, 212),
    "Near-full": (25, 25, 26, 33, 39, 41, 62),
    "Random": (25, 26, 34, 39, 41, 41, 113),
    "Scratch": (22, 29, 37, 50, 64, 89, 212),
    "none": (22, 26, 30, 41, 53, 53, 101),
}
CLASS_ASPECT = {  # (square share, std of log(cols/rows) of the others)
    "Center": (0.30, 0.14), "Donut": (0.54, 0.15), "Edge-Loc": (0.27, 0.21),
    "Edge-Ring": (0.62, 0.17), "Loc": (0.34, 0.19), "Near-full": (0.20, 0.10),
    "Random": (0.44, 0.15), "Scratch": (0.21, 0.19), "none": (0.14, 0.12),
}
ROWS_QUANTILES = (0, 0.10, 0.25, 0.50, 0.75, 0.90, 1.0)
PROFILES = ("default", "wm811k")


def _real_shape(rng, cls: str) -> tuple[int, int]:
    # Inverse-CDF draw through the class's row quantiles: linear between
    # them, geometric in the top decile, whose span (60 to 212 rows) is wide.
    rq, u = CLASS_ROWS_Q[cls], rng.random()
    rows = np.interp(u, ROWS_QUANTILES, rq) if u < 0.9 else np.exp(np.interp(u, ROWS_QUANTILES, np.log(rq)))
    rows = int(round(rows))
    square, spread = CLASS_ASPECT[cls]
    aspect = 1.0 if rng.random() < square else float(np.exp(rng.normal(0, spread)))
    cols = int(np.clip(round(rows * aspect), 20, 2 * rows))
    return rows, cols


def _grid(rng: np.random.Generator, shape=None, profile: str = "default", cls: str = "none"):
    if shape is None and profile == "wm811k":
        rows, cols = _real_shape(rng, cls)
    elif shape is None:
        rows = int(rng.integers(26, 61))
        cols = int(np.clip(rows + rng.integers(-6, 7), 24, 64))
    else:
        rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    # Normalized polar coordinates with the wafer edge at r = 1.
    yy = (y + 0.5) / rows * 2 - 1
    xx = (x + 0.5) / cols * 2 - 1
    r = np.hypot(yy, xx)
    theta = np.arctan2(yy, xx)
    inside = r <= 1.0
    if profile == "wm811k":
        # Real wafers are not perfect discs: a flat (or notch side) cuts one
        # edge on many, and the outline wobbles by a die.
        if rng.random() < 0.4:
            a = rng.uniform(-np.pi, np.pi)
            inside &= xx * np.cos(a) + yy * np.sin(a) <= rng.uniform(0.85, 0.97)
        inside &= r <= 1.0 - 0.04 * rng.random(r.shape) * (r > 0.9)
    return inside, r, theta, yy, xx


def _frame(yy, xx, cy, cx, angle):
    """Coordinates along and across a direction through (cy, cx)."""
    along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    return along, across


def _blob(rng, yy, xx, cy, cx, radius, stretch=1.0, angle=0.0, jitter=0.15):
    """A disc (or an ellipse ``stretch`` times longer along ``angle``) with a
    ragged outline."""
    along, across = _frame(yy, xx, cy, cx, angle)
    d = np.hypot(along / stretch, across) / radius
    return d <= 1.0 + jitter * rng.standard_normal(d.shape)


def _pattern(name: str, rng: np.random.Generator, r, theta, yy, xx) -> np.ndarray:
    """Boolean mask of the dies that the defect pattern touches."""
    if name == "Center":
        return _blob(rng, yy, xx, *rng.normal(0, 0.06, 2), rng.uniform(0.18, 0.38))
    if name == "Donut":
        # A slightly off-centre ring, so radius alone does not give it away.
        rr = np.hypot(yy - rng.normal(0, 0.04), xx - rng.normal(0, 0.04))
        return np.abs(rr - rng.uniform(0.3, 0.5)) <= rng.uniform(0.08, 0.17)
    if name == "Edge-Loc":
        a0, width = rng.uniform(-np.pi, np.pi), rng.uniform(0.35, 0.9)
        dang = np.angle(np.exp(1j * (theta - a0)))
        return (r >= rng.uniform(0.68, 0.82)) & (np.abs(dang) <= width / 2)
    if name == "Edge-Ring":
        return r >= rng.uniform(0.8, 0.9)
    if name == "Loc":
        rad, ang = rng.uniform(0.3, 0.6), rng.uniform(-np.pi, np.pi)
        return _blob(rng, yy, xx, rad * np.sin(ang), rad * np.cos(ang), rng.uniform(0.12, 0.24))
    if name == "Near-full":
        return np.ones_like(r, dtype=bool)
    if name == "Random":
        return rng.random(r.shape) < rng.uniform(0.25, 0.5)
    if name == "Scratch":
        # A slightly curved thin line through a random point.
        ang = rng.uniform(0, np.pi)
        px, py = rng.uniform(-0.5, 0.5, 2)
        t, n = _frame(yy, xx, py, px, ang)
        n = n - rng.uniform(-0.4, 0.4) * t ** 2
        length = rng.uniform(0.5, 1.2)
        return (np.abs(n) <= rng.uniform(0.03, 0.06)) & (np.abs(t) <= length / 2)
    if name == "none":
        return np.zeros_like(r, dtype=bool)
    raise ValueError(f"unknown wafer class {name!r}")


def _pattern_real(name: str, rng: np.random.Generator, r, theta, yy, xx) -> np.ndarray:
    """The patterns as they look in the real file: sizes matched to its fail
    shares per class, and the variants that a model trained on the default
    shapes confused on real maps (quant.sim2real compares them)."""
    die = 2.0 / max(r.shape)          # one die in the normalized coordinates
    if name == "Center":
        size = float(np.exp(rng.uniform(np.log(0.1), np.log(0.55))))
        return _blob(rng, yy, xx, *rng.normal(0, 0.08, 2), size)
    if name == "Donut":
        rr = np.hypot(yy - rng.normal(0, 0.05), xx - rng.normal(0, 0.05))
        ring = np.abs(rr - rng.uniform(0.3, 0.55)) <= rng.uniform(0.1, 0.22)
        if rng.random() < 0.4:
            # an open ring: part of the circumference passes
            dang = np.angle(np.exp(1j * (theta - rng.uniform(-np.pi, np.pi))))
            ring &= np.abs(dang) <= rng.uniform(0.6, 0.9) * np.pi
        return ring
    if name == "Edge-Loc":
        a0 = rng.uniform(-np.pi, np.pi)
        dang = np.angle(np.exp(1j * (theta - a0)))
        kind = rng.random()
        if kind < 0.4:
            # a thin band on the outermost dies along part of the rim
            return (r >= 1 - rng.uniform(1.5, 4.0) * die) & (np.abs(dang) <= rng.uniform(0.3, 1.5))
        if kind < 0.7:
            # a blob that sits on the rim and reaches inwards
            rc = rng.uniform(0.85, 1.05)
            return _blob(rng, yy, xx, rc * np.sin(a0), rc * np.cos(a0), rng.uniform(0.2, 0.6))
        return (r >= rng.uniform(0.55, 0.8)) & (np.abs(dang) <= rng.uniform(0.25, 0.9))
    if name == "Edge-Ring":
        return r >= rng.uniform(0.9, 0.96)
    if name == "Loc":
        # an irregular, often elongated blob off centre, up to the edge
        rad, ang = rng.uniform(0.3, 0.8), rng.uniform(-np.pi, np.pi)
        size = float(np.exp(rng.uniform(np.log(0.06), np.log(0.32))))
        stretch, phi = rng.uniform(1.0, 2.5), rng.uniform(0, np.pi)
        return _blob(rng, yy, xx, rad * np.sin(ang), rad * np.cos(ang), size, stretch, phi, jitter=0.25)
    if name == "Near-full":
        # nearly solid; on some wafers a passing region is left on one side
        out = rng.random(r.shape) < rng.uniform(0.85, 1.0)
        if rng.random() < 0.4:
            a = rng.uniform(-np.pi, np.pi)
            out &= xx * np.cos(a) + yy * np.sin(a) <= rng.uniform(0.2, 0.8)
        return out
    if name == "Random":
        out = rng.random(r.shape) < rng.uniform(0.3, 0.65)
        if rng.random() < 0.6:
            # real Random wafers often fail along the whole outermost ring too
            out |= (r >= 1 - rng.uniform(1.0, 2.5) * die) & (rng.random(r.shape) < 0.85)
        return out
    if name == "Scratch":
        # one or two lines a die wide (in die units, so they stay thin on
        # 200-row grids), straight to clearly curved, up to a diameter long
        out = np.zeros_like(r, dtype=bool)
        for _ in range(1 + int(rng.random() < 0.3)):
            ang = rng.uniform(0, np.pi)
            px, py = rng.uniform(-0.6, 0.6, 2)
            t, n = _frame(yy, xx, py, px, ang)
            n = n - rng.uniform(-0.6, 0.6) * t ** 2
            out |= (np.abs(n) <= rng.uniform(0.5, 0.9) * die) & (np.abs(t) <= rng.uniform(0.2, 1.0))
        return out
    return _pattern(name, rng, r, theta, yy, xx)


def _nuisance_real(rng, r, yy, xx) -> np.ndarray:
    """Background fails at the real file's rates, which fall with the grid:
    'none' wafers of under 28 rows have a median of 17 % failing dies, of
    28..35 rows 9 %, of 35 rows and more 6 %."""
    median = np.interp(r.shape[0], [25, 31, 38], [0.16, 0.095, 0.06])
    rate = float(np.clip(np.exp(rng.normal(np.log(median), 0.45)), 0.003, 0.3))
    fail = rng.random(r.shape) < rate
    if rng.random() < 0.25:
        # a small cluster or two, too small to be Loc
        for _ in range(int(rng.integers(1, 3))):
            cy, cx = rng.uniform(-0.8, 0.8, 2)
            fail |= _blob(rng, yy, xx, cy, cx, rng.uniform(0.02, 0.045))
    if rng.random() < 0.4:
        fail |= (r >= 0.93) & (rng.random(r.shape) < rng.uniform(0.05, 0.3))
    return fail


def _nuisance(rng, r, yy, xx) -> np.ndarray:
    """Fails that belong to no pattern: background, small clusters, rim."""
    fail = rng.random(r.shape) < 0.06 * rng.random() ** 2
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(-0.8, 0.8, 2)
            fail |= _blob(rng, yy, xx, cy, cx, rng.uniform(0.03, 0.07))
    if rng.random() < 0.3:
        fail |= (r >= 0.95) & (rng.random(r.shape) < rng.uniform(0.05, 0.2))
    return fail


def _compose(names, rng, shape=None, profile: str = "default") -> np.ndarray:
    if profile not in PROFILES:
        raise ValueError(f"unknown generator profile {profile!r}; known: {', '.join(PROFILES)}")
    inside, r, theta, yy, xx = _grid(rng, shape, profile, names[0] if names else "none")
    real = profile == "wm811k"
    fail = (_nuisance_real if real else _nuisance)(rng, r, yy, xx)
    for name in names:
        intensity = rng.uniform(0.92, 1.0) if name == "Near-full" else rng.uniform(0.65, 1.0)
        mask = (_pattern_real if real else _pattern)(name, rng, r, theta, yy, xx)
        fail |= mask & (rng.random(r.shape) < intensity)
    return np.where(inside, np.where(fail, 2, 1), 0).astype(np.uint8)


def wafer_map(name: str, rng: np.random.Generator, shape=None, profile: str = "default") -> np.ndarray:
    """One map of class ``name``: uint8 rows x cols, values 0/1/2.

    ``shape`` fixes the die grid (rows, cols); by default it is drawn
    (26..60 rows, 24..64 cols; ``profile="wm811k"``: the real file's grid
    sizes, yield and pattern sizes, and non-round edges)."""
    if name not in WAFER_CLASSES:
        raise ValueError(f"unknown wafer class {name!r}")
    return _compose(() if name == "none" else (name,), rng, shape, profile)


def mixed_map(names, rng: np.random.Generator, shape=None) -> np.ndarray:
    """One map with every pattern in ``names`` (any subset of MIXED_PATTERNS;
    empty = normal wafer); uint8 rows x cols, values 0/1/2."""
    bad = [n for n in names if n not in MIXED_PATTERNS]
    if bad:
        raise ValueError(f"unknown patterns {bad}; choose from {MIXED_PATTERNS}")
    return _compose(tuple(names), rng, shape)


def multi_hot(names) -> np.ndarray:
    """uint8 [8] label of a pattern combination, in MIXED_PATTERNS order."""
    out = np.zeros(len(MIXED_PATTERNS), dtype=np.uint8)
    for n in names:
        out[MIXED_PATTERNS.index(n)] = 1
    return out


def dataset(n: int, seed: int = 0, classes=WAFER_CLASSES,
            profile: str = "default") -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` maps with balanced labels (indices into ``classes``), shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(classes))
    return [wafer_map(classes[k], rng, profile=profile) for k in labels], labels.astype(np.int64)


def mixed_dataset(n: int, seed: int = 0, combinations=MIXED_COMBINATIONS,
                  shape=(52, 52)) -> tuple[object, np.ndarray, np.ndarray]:
    """``n`` maps balanced over ``combinations`` (tuples of pattern names),
    shuffled. Returns (maps, multi_hot, combo): maps uint8 [N][rows][cols]
    when ``shape`` is fixed (MixedWM38 uses 52x52), else a list of 2-D maps;
    multi_hot uint8 [N][8] in MIXED_PATTERNS order; combo int64 [N], the
    index into ``combinations`` each map was drawn from."""
    rng = np.random.default_rng(seed)
    combos = [tuple(c) for c in combinations]
    combo = rng.permutation(np.arange(n) % len(combos)).astype(np.int64)
    maps = [mixed_map(combos[k], rng, shape) for k in combo]
    labels = np.stack([multi_hot(combos[k]) for k in combo]) if n else \
        np.zeros((0, len(MIXED_PATTERNS)), np.uint8)
    if shape is not None:
        maps = np.stack(maps) if n else np.zeros((0, *shape), np.uint8)
    return maps, labels, combo
