"""Synthetic wafer buffer-zone images with ground truth for defect size.

Models the inspection images of Lee et al., "Deep Learning-Based Detection of
Defects in Wafer Buffer Zone During Semiconductor Packaging Process": a
camera looks at the wafer edge while the wafer spins; between the EMC mold
and the wafer edge lies the buffer zone, bare silicon that may be stained by
resin bleed. Classes ``BUFFER_CLASSES`` = (Crack, EMC, Normal, Notch).

Image layout: uint8 grayscale [H][W]; rows run radially outwards, columns
along the wafer circumference. From the top: EMC mold (dark, granular),
its edge at row ``mold_edge[x]``; the buffer zone (bright, with an
illumination gradient and optional resin-bleed stains hanging off the mold
edge); a bevel ramp ending at the wafer edge row ``wafer_edge[x]``; the dark
background outside the wafer. Edges are slightly tilted and wavy.

* Normal: resin bleed on most images (the paper's main confuser).
* Notch: the V-shaped alignment notch cut into the wafer edge; not a defect.
* Crack: a thin dark polyline (random angle, length, wiggle, maybe one
  branch) that stays inside the buffer zone.
* EMC: mold invading the buffer zone from its edge: a bump of given depth
  and width with a jagged front, drawn with the mold's texture.

Ground truth per image (``truth``; 0 where it does not apply):
``mask`` bool [H][W], the defect pixels (the 1-px crack centreline, or the
invaded region; empty for Normal/Notch); ``crack_length`` (px, the summed
centreline length of all segments), ``crack_dx`` / ``crack_dy`` (px, the
horizontal / vertical extent of the centreline, the paper's crack size),
``emc_depth`` (px, deepest invasion measured from the local mold edge,
the paper's "invasion depth"), ``emc_width`` (px, columns invaded),
``mold_edge`` / ``wafer_edge`` float32 [W] rows.

Same seed, same images. About 10k 96x96 images per few seconds.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

BUFFER_CLASSES = ("Crack", "EMC", "Normal", "Notch")


def _size(size) -> tuple[int, int]:
    h, w = (size, size) if np.isscalar(size) else size
    if h < 32 or w < 32:
        raise ValueError(f"buffer images need at least 32x32 pixels, got {h}x{w}")
    return int(h), int(w)


@lru_cache(maxsize=64)
def _interp(n: int, cell: int) -> np.ndarray:
    # Linear interpolation as a matrix, so upsampling is two small matmuls.
    t = np.arange(n) / cell
    i = t.astype(int)
    m = np.zeros((n, n // cell + 2), dtype=np.float32)
    m[np.arange(n), i] = 1 - (t - i)
    m[np.arange(n), i + 1] = t - i
    return m


def _smooth(rng, h, w, cell) -> np.ndarray:
    """Bilinear-upsampled Gaussian noise with features ~``cell`` px wide."""
    g = rng.standard_normal((h // cell + 2, w // cell + 2), dtype=np.float32)
    return _interp(h, cell) @ g @ _interp(w, cell).T


def _edge(rng, w, row, wobble) -> np.ndarray:
    x = np.arange(w)
    return (row + rng.uniform(-0.04, 0.04) * (x - w / 2)
            + wobble * _smooth(rng, 1, w, max(w // 6, 2))[0]).astype(np.float32)


def _mold(rng, h, w) -> np.ndarray:
    # Filler particles make the mold granular: blotches plus bright specks
    # (its fine grain comes from the stronger pixel noise in the mold).
    tex = rng.uniform(45, 85) + 8 * _smooth(rng, h, w, 3)
    return tex + 35 * (rng.random((h, w), dtype=np.float32) < 0.03)


def _polyline(rng, x, y, ang, length, ok):
    pts, total = [(x, y)], 0.0
    while total < length:
        ang += rng.normal(0, 0.25)
        step = min(rng.uniform(2, 4), length - total)
        nx, ny = x + step * np.cos(ang), y + step * np.sin(ang)
        if not ok(nx, ny):
            break
        pts.append((nx, ny))
        total += step
        x, y = nx, ny
    return np.array(pts), total


def _crack(rng, h, w, top, bot):
    """(mask, length, dx, dy): a centreline inside rows top..bot (per column)."""
    def ok(x, y):
        c = int(round(x))
        return 1 <= c <= w - 2 and top[c] + 2 <= y <= bot[c] - 2

    for _ in range(20):
        x0 = rng.uniform(2, w - 3)
        c = int(round(x0))
        y0 = rng.uniform(top[c] + 3, max(bot[c] - 3, top[c] + 3.5))
        ang = rng.uniform(0, 2 * np.pi)
        main, length = _polyline(rng, x0, y0, ang, rng.uniform(8, 0.8 * max(h, w)), ok)
        if length >= 6:
            break
    lines = [main]
    if rng.random() < 0.4 and len(main) > 3:
        bx, by = main[rng.integers(1, len(main) - 1)]
        side = rng.choice((-1, 1)) * rng.uniform(0.4, 1.0)
        branch, blen = _polyline(rng, bx, by, ang + side, rng.uniform(0.2, 0.5) * length, ok)
        if len(branch) > 1:
            lines.append(branch)
            length += blen
    mask = np.zeros((h, w), dtype=bool)
    for p in lines:
        for (xa, ya), (xb, yb) in zip(p[:-1], p[1:]):
            t = np.linspace(0, 1, int(np.hypot(xb - xa, yb - ya) * 4) + 2)
            mask[np.round(ya + t * (yb - ya)).astype(int), np.round(xa + t * (xb - xa)).astype(int)] = True
    allp = np.concatenate(lines)
    dx, dy = np.ptp(allp[:, 0]), np.ptp(allp[:, 1])
    return mask, float(length), float(dx), float(dy)


def _emc(rng, h, w, mold_row, band):
    """(mask, depth, width): a bump below the integer mold edge ``mold_row``."""
    depth = int(max(2, round(rng.uniform(0.15, 0.85) * band.min())))
    half = rng.uniform(0.08, 0.4) * w
    c0, p = rng.uniform(0, w), rng.uniform(1.5, 4.0)
    u = np.abs(np.arange(w) - c0) / half
    prof = depth * np.clip(1 - u ** p, 0, None) ** (1 / p)
    prof = np.where(prof > 0, prof + rng.normal(0, 0.8, w), 0)
    prof = np.clip(np.round(prof), 0, depth).astype(int)
    if prof.max() < depth:  # the recorded depth is reached somewhere
        prof[np.argmax(np.where(u < 1, prof, -1))] = depth
    rows = np.arange(h)[:, None]
    mask = (rows >= mold_row[None, :]) & (rows < mold_row[None, :] + prof[None, :])
    return mask, depth, int((prof > 0).sum())


def buffer_image(name: str, rng: np.random.Generator, size=96):
    """One image of class ``name``: (uint8 [H][W], truth dict of scalars and
    ``mask`` bool [H][W], ``mold_edge``/``wafer_edge`` float32 [W])."""
    if name not in BUFFER_CLASSES:
        raise ValueError(f"unknown buffer-zone class {name!r}; choose from {BUFFER_CLASSES}")
    h, w = _size(size)
    mold_edge = _edge(rng, w, rng.uniform(0.15, 0.3) * h, rng.uniform(0.2, 1.5))
    band0 = rng.uniform(0.4, 0.55) * h
    wafer_edge = np.minimum(_edge(rng, w, mold_edge.mean() + band0, rng.uniform(0, 1.0)), h - 4)
    mold_row = np.ceil(mold_edge).astype(int)
    rows = np.arange(h, dtype=np.float32)[:, None]

    bright = rng.uniform(140, 205)
    img = bright + rng.uniform(-18, 18) * (np.arange(w, dtype=np.float32) / w - 0.5)[None, :] + 3 * _smooth(rng, h, w, 12)
    bevel = rng.uniform(3, 8)
    ramp = np.clip((rows - (wafer_edge - bevel)) / bevel, 0, 1)
    img = img * (1 - 0.45 * ramp)
    background = rng.uniform(10, 35)
    outside = rows >= wafer_edge[None, :]
    mold = _mold(rng, h, w)
    in_mold = rows < mold_row[None, :]

    if rng.random() < (0.75 if name == "Normal" else 0.4):
        # Resin bleed: blotchy translucent stain hanging off the mold edge.
        below = rows - mold_edge[None, :]
        decay = rng.uniform(0.15, 0.7) * band0
        stain = np.clip(_smooth(rng, h, w, int(rng.integers(3, 9))) - rng.uniform(-0.3, 0.6), 0, 1)
        img -= rng.uniform(15, 55) * stain * np.exp(-np.clip(below, 0, None) / decay) * (below >= 0)

    truth = dict(mask=np.zeros((h, w), dtype=bool), crack_length=0.0, crack_dx=0.0, crack_dy=0.0,
                 emc_depth=0, emc_width=0, mold_edge=mold_edge, wafer_edge=wafer_edge)
    if name == "Notch":
        c0, half = rng.uniform(0.2, 0.8) * w, rng.uniform(0.12, 0.3) * w
        depth = rng.uniform(0.4, 0.9) * (wafer_edge - mold_edge).min()
        cut = wafer_edge - depth * np.clip(1 - np.abs(np.arange(w) - c0) / half, 0, None) ** 0.8
        rim = np.clip(1 - np.abs(rows - cut[None, :]) / 2.5, 0, 1) * (rows < wafer_edge[None, :])
        img = img * (1 - 0.4 * rim)
        outside |= rows >= cut[None, :]
    elif name == "Crack":
        mask, length, dx, dy = _crack(rng, h, w, mold_edge, wafer_edge - bevel)
        halo = np.zeros_like(mask)
        halo[1:] |= mask[:-1]
        halo[:-1] |= mask[1:]
        halo[:, 1:] |= mask[:, :-1]
        halo[:, :-1] |= mask[:, 1:]
        contrast = rng.uniform(35, 100)
        img -= contrast * mask + 0.3 * contrast * (halo & ~mask)
        truth.update(mask=mask, crack_length=length, crack_dx=dx, crack_dy=dy)
    elif name == "EMC":
        mask, depth, width = _emc(rng, h, w, mold_row, wafer_edge - mold_edge - bevel)
        in_mold |= mask
        truth.update(mask=mask, emc_depth=depth, emc_width=width)

    img = np.where(in_mold, mold, np.where(outside, background, img))
    # One noise field, stronger in the granular mold than on silicon.
    sigma = np.where(in_mold, 5.0, rng.uniform(1.5, 5)).astype(np.float32)
    img = img * rng.uniform(0.9, 1.1) + sigma * rng.standard_normal((h, w), dtype=np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), truth


def dataset(n: int, seed: int = 0, size=96):
    """``n`` class-balanced images, shuffled: (images uint8 [N][H][W], labels
    int64 [N] into BUFFER_CLASSES, truth dict: ``mask`` bool [N][H][W];
    ``crack_length``/``crack_dx``/``crack_dy`` float32 [N]; ``emc_depth``/
    ``emc_width`` int32 [N]; ``mold_edge``/``wafer_edge`` float32 [N][W])."""
    h, w = _size(size)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(BUFFER_CLASSES)).astype(np.int64)
    images = np.empty((n, h, w), dtype=np.uint8)
    truth = dict(mask=np.zeros((n, h, w), dtype=bool),
                 crack_length=np.zeros(n, np.float32), crack_dx=np.zeros(n, np.float32),
                 crack_dy=np.zeros(n, np.float32), emc_depth=np.zeros(n, np.int32),
                 emc_width=np.zeros(n, np.int32), mold_edge=np.zeros((n, w), np.float32),
                 wafer_edge=np.zeros((n, w), np.float32))
    for i, k in enumerate(labels):
        images[i], t = buffer_image(BUFFER_CLASSES[k], rng, (h, w))
        for key, v in t.items():
            truth[key][i] = v
    return images, labels, truth
