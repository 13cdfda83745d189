"""Synthetic WM-811K-style wafer maps for the nine classes.

A map is a 2-D uint8 array of die categories, as in LSWMD.pkl:
0 = no die (outside the wafer), 1 = pass, 2 = fail. Each map has its own die
grid (rows x cols, a round wafer inside it), its own background fail rate
(yield) and its own pattern position, size and intensity, so that a model
cannot key on one geometry. Everything is drawn from one seeded generator:
the same seed gives the same maps.
"""
from __future__ import annotations

import numpy as np

from quant.spec import WAFER_CLASSES


def _grid(rng: np.random.Generator):
    rows = int(rng.integers(26, 61))
    cols = int(np.clip(rows + rng.integers(-6, 7), 24, 64))
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    # Normalized polar coordinates with the wafer edge at r = 1.
    yy = (y + 0.5) / rows * 2 - 1
    xx = (x + 0.5) / cols * 2 - 1
    r = np.hypot(yy, xx)
    theta = np.arctan2(yy, xx)
    return r <= 1.0, r, theta, yy, xx


def _blob(rng, yy, xx, cy, cx, radius):
    d = np.hypot(yy - cy, xx - cx) / radius
    return d <= 1.0 + 0.15 * rng.standard_normal(d.shape)


def _pattern(name: str, rng: np.random.Generator, r, theta, yy, xx) -> np.ndarray:
    """Boolean mask of the dies that the defect pattern touches."""
    if name == "Center":
        return _blob(rng, yy, xx, *rng.normal(0, 0.06, 2), rng.uniform(0.18, 0.38))
    if name == "Donut":
        r0 = rng.uniform(0.3, 0.5)
        return np.abs(r - r0) <= rng.uniform(0.08, 0.17)
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
        t = (xx - px) * np.cos(ang) + (yy - py) * np.sin(ang)
        n = -(xx - px) * np.sin(ang) + (yy - py) * np.cos(ang)
        n = n - rng.uniform(-0.4, 0.4) * t ** 2
        length = rng.uniform(0.5, 1.2)
        return (np.abs(n) <= rng.uniform(0.03, 0.06)) & (np.abs(t) <= length / 2)
    if name == "none":
        return np.zeros_like(r, dtype=bool)
    raise ValueError(f"unknown wafer class {name!r}")


def wafer_map(name: str, rng: np.random.Generator) -> np.ndarray:
    """One map of class ``name``: uint8 rows x cols, values 0/1/2."""
    inside, r, theta, yy, xx = _grid(rng)
    background = rng.uniform(0.0, 0.06)
    fail = rng.random(r.shape) < background
    intensity = rng.uniform(0.92, 1.0) if name == "Near-full" else rng.uniform(0.65, 1.0)
    fail |= _pattern(name, rng, r, theta, yy, xx) & (rng.random(r.shape) < intensity)
    out = np.where(inside, np.where(fail, 2, 1), 0).astype(np.uint8)
    return out


def dataset(n: int, seed: int = 0, classes=WAFER_CLASSES) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` maps with balanced labels (indices into ``classes``), shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(classes))
    return [wafer_map(classes[k], rng) for k in labels], labels.astype(np.int64)
