"""Defect sizes in input pixels, from a pixel mask or from the image itself.

The mask measurements (``extent``, ``crack_size``, ``emc_depth``) size a
binarized CAM; ``guided`` lets a CAM region pick the defect and sizes the
defect's own pixels in the buffer-zone image (dark thin lines for cracks,
the invaded run of the mold edge for EMC). Units and definitions are those
of ``quant.buffer_synth``'s truth. ``quant.cam`` chooses between them.

Pure numpy, no torch.
"""
from __future__ import annotations

import numpy as np

CRACK, EMC = "Crack", "EMC"
# Largest mold-edge slope (rows per column, about 4.6 degrees) ``mold_edge`` accepts.
MAX_TILT = 0.08


def _gray(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    return img[..., 0] if img.ndim == 3 else img


def _below_mold(img: np.ndarray) -> np.ndarray:
    """bool [H][W]: the (3-row smoothed) grey level is above the midpoint of
    the mold's (top rows) and the buffer zone's (brightest rows) levels; row 0
    never counts, so a column's first True row is the first row below the mold."""
    h = img.shape[0]
    sm = (img + np.roll(img, 1, 0) + np.roll(img, -1, 0)) / 3
    above = sm > (np.median(img[: max(2, h // 10)]) + np.percentile(img, 90)) / 2
    above[0] = False
    return above


def extent(mask: np.ndarray) -> tuple[float, float]:
    """(dx, dy): max - min column and row of the True pixels; (0, 0) if none."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0.0, 0.0
    return float(np.ptp(cols)), float(np.ptp(rows))


def crack_size(mask: np.ndarray) -> dict:
    dx, dy = extent(mask)
    return {"crack_dx": dx, "crack_dy": dy, "crack_length": float(np.hypot(dx, dy))}


def mold_edge(image: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Per-column row of the mold edge (float [W]) found in a buffer-zone image.

    A column's edge is its first row below the mold (``_below_mold``); a
    line is fitted, robustly, through the columns not in ``exclude`` (bool
    [W], e.g. invaded by EMC)."""
    img = _gray(image)
    h, w = img.shape
    above = _below_mold(img)
    first = np.where(above.any(0), above.argmax(0), h // 4).astype(np.float64)
    cols = np.arange(w)
    keep = np.ones(w, bool) if exclude is None else ~np.asarray(exclude, bool)
    if keep.sum() < 4:
        keep = np.ones(w, bool)
    def fit(sel):
        # The camera looks along the mold edge: its tilt stays within MAX_TILT.
        # Unbounded, a line through clean columns on one side and invaded
        # ones on the other would fit both.
        a = float(np.clip(np.polyfit(cols[sel], first[sel], 1)[0], -MAX_TILT, MAX_TILT))
        return a, float(np.median(first[sel] - a * cols[sel]))

    base = keep
    a, b = fit(keep)
    for _ in range(8):
        # Invasion and resin bleed only ever push a column's first bright row
        # *down*: refit on the columns at most 1.5 px below the line, so the
        # fit climbs to the mold edge's upper envelope (a symmetric fit, with
        # the invasion at one side, tilts towards it and keeps it).
        d = first - (a * cols + b)
        new = base & (d <= 1.5)
        if new.sum() < 4:
            break
        a, b = fit(new)
    d = first - (a * cols + b)
    new = base & (d <= 1.5) & (d >= -4)    # and without stray bright specks
    if new.sum() >= 4:
        a, b = fit(new)
    return a * cols + b


def emc_depth(mask: np.ndarray, edge: np.ndarray) -> dict:
    """Deepest invasion below the mold edge: max over columns of (bottom of the
    region's lowest pixel - first silicon row ``ceil(edge)``), the generator's
    definition (it invades rows ceil(edge) .. ceil(edge) + depth - 1)."""
    rows = np.arange(mask.shape[0])[:, None]
    low = np.where(mask, rows, -1).max(0)
    cols = low >= 0
    if not cols.any():
        return {"emc_depth": 0.0}
    return {"emc_depth": float(max(0.0, (low[cols] + 1 - np.ceil(edge[cols])).max()))}


def _box_mean(img: np.ndarray, r: int) -> np.ndarray:
    p = np.pad(img, r, mode="edge")
    c = np.pad(p.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    k = 2 * r + 1
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def first_bright(image: np.ndarray) -> np.ndarray:
    """Per column, the first row below the mold (see ``mold_edge``), int [W]."""
    above = _below_mold(_gray(image))
    return np.where(above.any(0), above.argmax(0), 0)


def wafer_edge(image: np.ndarray) -> np.ndarray:
    """Per column, the last bright row above the dark background, int [W]."""
    img = _gray(image)
    h = img.shape[0]
    bright = img > (np.median(img[-max(2, h // 16):]) + np.percentile(img, 90)) / 2
    return h - 1 - np.argmax(bright[::-1], axis=0)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels of ``mask`` (0 = background) and their count: a
    two-pass union-find, small enough for the host (numpy only)."""
    h, w = mask.shape
    parent = list(range(h * w + 1))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    ids = np.zeros((h, w), np.int64)
    for r, c in zip(*np.nonzero(mask)):
        ids[r, c] = r * w + c + 1
        for dr, dc in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and ids[rr, cc]:
                ra, rb = find(ids[r, c]), find(ids[rr, cc])
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(v) if v else 0 for v in ids.ravel()]).reshape(h, w)
    uniq, labels = np.unique(roots, return_inverse=True)
    labels = labels.reshape(h, w)
    if uniq[0] != 0:          # no background at all
        labels = labels + 1
    return labels, int(len(uniq) - (uniq[0] == 0))


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    p = np.pad(mask, r)
    h, w = mask.shape
    return np.any([p[r + a:r + a + h, r + b:r + b + w] for a in range(-r, r + 1) for b in range(-r, r + 1)], 0)


def crack_pixels(image: np.ndarray, edge: np.ndarray, seed: np.ndarray,
                 cam_up: np.ndarray | None = None) -> np.ndarray:
    """The dark thin-line pixels of the crack that the CAM region ``seed`` points at.

    Inside the buffer band (below the mold edge, above the wafer edge's
    bevel), a pixel is a line pixel when it is darker than its 5x5
    neighbourhood by more than 4 noise sigmas (estimated robustly over the
    band) and more than a third of the strongest contrast under the seed.
    The crack is every 8-connected line component that touches the seed, so
    the CAM decides *which* dark line, and the pixels decide *how long*. A
    blurry CAM may peak beside the crack: then, given the map ``cam_up``, the
    component with the largest CAM mass (sum over its pixels) is taken."""
    img = _gray(image)
    h, w = img.shape
    rows = np.arange(h)[:, None]
    band = (rows >= np.ceil(edge)[None, :] + 1) & (rows <= wafer_edge(img)[None, :] - 3)
    resid = _box_mean(img, 2) - img
    if not band.any():
        return np.zeros_like(band)
    vals = resid[band]
    sigma = 1.4826 * np.median(np.abs(vals - np.median(vals))) + 1e-9
    near = _dilate(seed, 2) & band
    peak = resid[near].max() if near.any() else 0.0
    line = band & (resid > max(4 * sigma, peak / 3))
    labels, n = _components(line)
    hit = np.unique(labels[near & line])
    hit = hit[hit > 0]
    if hit.size == 0 and cam_up is not None and n > 0:
        mass = np.bincount(labels.ravel(), weights=np.clip(cam_up, 0, None).ravel(), minlength=n + 1)
        hit = np.array([int(np.argmax(mass[1:])) + 1])
    if hit.size == 0:
        return np.zeros_like(line)
    return np.isin(labels, hit)


def invaded_runs(invaded: np.ndarray, gap: int = 2) -> list[tuple[int, int]]:
    """[start, stop) column runs of ``invaded`` (bool [W]); runs apart by at most
    ``gap`` clean columns are one run: a jagged invasion front dips back above
    the threshold here and there without being two invasions."""
    runs: list[list[int]] = []
    for c in np.nonzero(invaded)[0]:
        if runs and c - runs[-1][1] <= gap:
            runs[-1][1] = c + 1
        else:
            runs.append([int(c), int(c) + 1])
    return [(a, b) for a, b in runs]


def guided(mask: np.ndarray, image: np.ndarray, kind: str, cam_up: np.ndarray | None = None) -> dict:
    """CAM-guided image measurement: the CAM region says *where*, the pixels say how big.

    Crack: the extent of ``crack_pixels`` seeded by the region, and length =
    hypot(dx, dy). EMC: the columns where the first bright row lies more than
    1.5 px below the fitted mold edge form runs (``invaded_runs``); over the
    runs the region touches (or, touching none, the run under most CAM mass),
    the deepest such row (``emc_depth`` of the generator: rows
    ceil(edge) .. ceil(edge) + depth - 1 are mold)."""
    img = _gray(image)
    region = np.asarray(mask, bool)
    if not region.any():
        return crack_size(region) if kind == CRACK else {"emc_depth": 0.0}
    if kind == EMC:
        # The edge fit climbs to the mold's upper envelope, which an invasion
        # never moves; excluding the region's columns as well would leave a
        # region that covers the clean columns with only invaded ones to fit.
        depth = first_bright(img) - np.ceil(mold_edge(img))
        runs = invaded_runs(depth > 1.5)
        if not runs:
            return {"emc_depth": 0.0}
        cols = region.any(0)
        touched = [r for r in runs if cols[r[0]:r[1]].any()]
        if not touched and cam_up is not None:
            # The region lies beside every invasion: the run under most of
            # the CAM's mass is the one it points at (as for cracks).
            mass = np.clip(cam_up, 0, None).sum(0)
            touched = [max(runs, key=lambda r: mass[r[0]:r[1]].sum())]
        if not touched:
            return {"emc_depth": 0.0}
        return {"emc_depth": float(max(depth[a:b].max() for a, b in touched))}
    edge = mold_edge(img, exclude=region.any(0))
    return crack_size(crack_pixels(img, edge, region, cam_up))
