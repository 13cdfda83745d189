"""Class activation maps of the buffer-zone model, and defect size from them.

CAM (Zhou et al. 2016) on the *integer* model, so that the host can compute the
same numbers from the accelerator's ``cam`` feature map:

    CAM_k(h, w) = sum_c fc.w[k, c] * F_cam[h, w, c]

``F_cam`` is ``IntModel.run(images)["cam"]`` (uint codes [N][h][w][C]) and
``fc.w`` the int8 weights of the linear head after global average pooling
([K][C]; the GAP output is 1x1xC, so its HWC flatten order is just C). The
bias, the GAP shift and the power-of-two scales are the same for every pixel,
so they change neither the arg-max nor a threshold relative to the maximum.
The CAM is then upsampled bilinearly to the input size and binarized at a
fraction ``frac`` of its maximum (``frac`` is chosen on a validation set).

Size measurement (all in input pixels, the units of ``quant.buffer_synth``):

* crack ``dx`` / ``dy``: horizontal / vertical extent (max - min column / row)
  of the binarized region; ``length``: its diagonal ``hypot(dx, dy)`` (the
  generator's ``crack_length`` is the summed centreline length, which is at
  least that diagonal: wiggle and an optional branch add to it);
* EMC ``depth``: the deepest point of the region below the mold edge,
  ``max over columns (lowest region row + 1 - ceil(mold edge))``; the mold edge is
  found in the image per column (first row brighter than halfway between the
  mold's and the buffer zone's grey levels), a robust line through the
  columns outside the region, so the invasion itself does not move it.

A CAM at input/4 resolution is blurry, so the raw measurements are biased
(a blob is wider than a 1-px crack). ``Calibration`` holds one linear
correction ``true ~= a * measured + b`` per quantity, fitted by least squares
on the validation set together with ``frac``; ``evaluate`` reports the MAPE
(mean absolute percentage error against the generator's truth) per quantity.

Pure numpy; ``quant.intmodel`` is the only import from the package.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

QUANTITIES = ("crack_length", "crack_dx", "crack_dy", "emc_depth")
# A quarter-resolution CAM cannot resolve sizes below one cell (4 px at input
# 64): an extent of 1 px measured as 3 px is a 200% error. ``evaluate``
# therefore also reports the MAPE over truths of at least MIN_TRUE px.
MIN_TRUE = 4.0
# Largest mold-edge slope (rows per column, about 4.6 degrees) ``mold_edge`` accepts.
MAX_TILT = 0.08
CRACK, EMC = "Crack", "EMC"


# --- the maps --------------------------------------------------------------
def cam_from_features(features: np.ndarray, fc_w: np.ndarray) -> np.ndarray:
    """int64 CAMs [N][K][h][w] from ``cam`` features [N][h][w][C] and fc weights [K][C]."""
    f = np.asarray(features, dtype=np.int64)
    w = np.asarray(fc_w, dtype=np.int64)
    if f.ndim == 3:
        f = f[None]
    if w.shape[1] != f.shape[-1]:
        raise ValueError(f"fc weights {w.shape} do not match {f.shape[-1]} cam channels")
    return np.einsum("nhwc,kc->nkhw", f, w)


def int_cams(im, images: np.ndarray, layer: str = "cam", head: str = "fc") -> tuple[np.ndarray, np.ndarray]:
    """(CAMs int64 [N][K][h][w], logits int64 [N][K]) of an ``IntModel``."""
    acts = im.run(images)
    logits = acts[im.layers[-1]["name"]]
    return cam_from_features(acts[layer], im.weights[f"{head}.w"]), logits.reshape(len(logits), -1)


@lru_cache(maxsize=16)
def _bilinear(n_in: int, n_out: int) -> np.ndarray:
    """[n_out][n_in] matrix of bilinear interpolation (half-pixel centres, edge clamp)."""
    t = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i = np.minimum(t.astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    m = np.zeros((n_out, n_in))
    if n_in == 1:
        m[:, 0] = 1
        return m
    m[np.arange(n_out), i] = 1 - (t - i)
    m[np.arange(n_out), i + 1] = t - i
    return m


def upsample(cam: np.ndarray, size) -> np.ndarray:
    """Bilinear upsampling of [..., h, w] maps to [..., H, W] (float64)."""
    hh, ww = (size, size) if np.isscalar(size) else size
    h, w = cam.shape[-2:]
    return _bilinear(h, hh) @ np.asarray(cam, dtype=np.float64) @ _bilinear(w, ww).T


def binarize(cam: np.ndarray, frac: float) -> np.ndarray:
    """Pixels at or above ``frac`` of the map's maximum ([..., H, W]); empty if max <= 0."""
    peak = cam.max(axis=(-2, -1), keepdims=True)
    return (cam >= frac * peak) & (peak > 0)


# --- measurements ----------------------------------------------------------
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

    A column's edge is the first row whose (3-row smoothed) grey level
    exceeds the midpoint of the mold's (top rows) and the buffer zone's
    (brightest rows) levels; a line is fitted, robustly, through the
    columns not in ``exclude`` (bool [W], e.g. invaded by EMC)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., 0]
    h, w = img.shape
    sm = (img + np.roll(img, 1, 0) + np.roll(img, -1, 0)) / 3
    dark = np.median(img[: max(2, h // 10)])
    bright = np.percentile(img, 90)
    above = sm > (dark + bright) / 2
    above[0] = False
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
    img = np.asarray(image, dtype=np.float64)
    img = img[..., 0] if img.ndim == 3 else img
    h = img.shape[0]
    sm = (img + np.roll(img, 1, 0) + np.roll(img, -1, 0)) / 3
    above = sm > (np.median(img[: max(2, h // 10)]) + np.percentile(img, 90)) / 2
    above[0] = False
    return np.where(above.any(0), above.argmax(0), 0)


def wafer_edge(image: np.ndarray) -> np.ndarray:
    """Per column, the last bright row above the dark background, int [W]."""
    img = np.asarray(image, dtype=np.float64)
    img = img[..., 0] if img.ndim == 3 else img
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
    img = np.asarray(image, dtype=np.float64)
    img = img[..., 0] if img.ndim == 3 else img
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
    img = np.asarray(image, dtype=np.float64)
    img = img[..., 0] if img.ndim == 3 else img
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


METHODS = ("cam", "guided", "image")


def measure(cam_up: np.ndarray, image: np.ndarray, kind: str, frac: float, method: str = "cam") -> dict:
    """Raw (uncorrected) sizes from one upsampled CAM [H][W] of class ``kind``;
    ``method`` "cam" (the binarized CAM alone), "guided" (see ``guided``) or
    "image": ``guided`` with the whole image as the region, the ablation that
    shows what the CAM adds (every dark line in the band counts as crack)."""
    if method not in METHODS:
        raise ValueError(f"unknown size method {method!r}; choose from {', '.join(METHODS)}")
    if method == "image":
        return guided(np.ones(np.shape(cam_up), bool), image, kind)
    mask = binarize(cam_up, frac)
    if method == "guided":
        return guided(mask, image, kind, cam_up)
    if kind == CRACK:
        return crack_size(mask)
    if kind == EMC:
        return emc_depth(mask, mold_edge(image, exclude=mask.any(0)))
    raise ValueError(f"no size for class {kind!r}")


# --- calibration and evaluation -------------------------------------------
def mape(true, pred) -> float:
    """Mean absolute percentage error in percent, over samples with true != 0."""
    t, p = np.asarray(true, float), np.asarray(pred, float)
    keep = t != 0
    if not keep.any():
        return float("nan")
    return float(100 * np.mean(np.abs(p[keep] - t[keep]) / np.abs(t[keep])))


@dataclass
class Calibration:
    """Binarization threshold and one linear correction (a, b) per quantity."""

    frac: dict = field(default_factory=lambda: {CRACK: 0.5, EMC: 0.5})
    method: str = "cam"
    linear: dict = field(default_factory=lambda: {q: (1.0, 0.0) for q in QUANTITIES})

    def correct(self, raw: dict) -> dict:
        return {k: self.linear.get(k, (1.0, 0.0))[0] * v + self.linear.get(k, (1.0, 0.0))[1]
                for k, v in raw.items()}

    def to_dict(self) -> dict:
        return asdict(self)


def _raw_table(cams_up, images, labels, classes, fracs, method="cam") -> dict:
    """{kind: {frac: {quantity: float [n_kind]}}} raw measurements on the true class's CAM."""
    out = {}
    for kind in (CRACK, EMC):
        k = classes.index(kind)
        idx = np.nonzero(np.asarray(labels) == k)[0]
        out[kind] = {"idx": idx}
        for f in fracs:
            rows = [measure(cams_up[i][k], images[i], kind, f, method) for i in idx]
            out[kind][f] = {q: np.array([r[q] for r in rows]) for q in rows[0]} if rows else {}
    return out


def _fit_line(raw, true, min_true: float = 1.0) -> tuple[float, float]:
    """Least squares of the *relative* error (what MAPE measures): minimize
    sum ((a r + b - t) / t)^2 over truths >= ``min_true`` (sub-pixel truths
    would dominate the fit otherwise)."""
    raw, true = np.asarray(raw, float), np.asarray(true, float)
    keep = true >= min_true
    if keep.sum() < 2:
        return 1.0, 0.0
    a_mat = np.stack([raw[keep] / true[keep], 1 / true[keep]], 1)
    (a, b), *_ = np.linalg.lstsq(a_mat, np.ones(keep.sum()), rcond=None)
    return float(a), float(b)


def calibrate(cams_up, images, labels, truth, classes,
              fracs=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8), method: str = "cam") -> Calibration:
    """Threshold and linear corrections that minimize the validation MAPE.

    ``cams_up`` float [N][K][H][W] (upsampled), ``labels`` the true classes:
    sizes are calibrated on the true defect's CAM (evaluation uses the
    predicted class's, see ``evaluate``). Per quantity the least-squares line
    is kept only where it lowers the validation MAPE: a few gross misses pull
    a least-squares fit away from the many good measurements, and the
    identity is then the better correction."""
    if method == "image":       # no threshold to choose
        fracs = fracs[:1]
    table = _raw_table(cams_up, images, labels, classes, fracs, method)
    cal = Calibration(method=method)
    for kind, quants in ((CRACK, ("crack_length", "crack_dx", "crack_dy")), (EMC, ("emc_depth",))):
        idx = table[kind]["idx"]
        if idx.size < 2:
            continue
        best = None
        for f in fracs:
            lines, errs = {}, []
            for q in quants:
                raw, tq = table[kind][f][q], truth[q][idx]
                fitted = _fit_line(raw, tq)
                cands = [(mape(tq, a * raw + b), (a, b)) for a, b in ((1.0, 0.0), fitted)]
                err, lines[q] = min(cands, key=lambda c: c[0])
                errs.append(err)
            if best is None or np.mean(errs) < best[0]:
                best = (np.mean(errs), f, lines)
        cal.frac[kind] = best[1]
        cal.linear.update(best[2])
    return cal


def predict_sizes(cams_up, images, pred, classes, cal: Calibration) -> list[dict]:
    """Corrected sizes for each image from the CAM of its *predicted* class ({} if not a defect)."""
    out = []
    for i, k in enumerate(pred):
        kind = classes[int(k)]
        out.append(cal.correct(measure(cams_up[i][k], images[i], kind, cal.frac[kind], cal.method))
                   if kind in (CRACK, EMC) else {})
    return out


def evaluate(cams_up, images, labels, pred, truth, classes, cal: Calibration) -> dict:
    """MAPE per quantity on the true defects (a missed defect is measured on
    its true class's CAM, so the size error is not confounded with recall)."""
    res, rows = {}, []
    for kind, quants in ((CRACK, ("crack_length", "crack_dx", "crack_dy")), (EMC, ("emc_depth",))):
        k = classes.index(kind)
        idx = np.nonzero(np.asarray(labels) == k)[0]
        sizes = [cal.correct(measure(cams_up[i][k], images[i], kind, cal.frac[kind], cal.method)) for i in idx]
        for q in quants:
            est = np.array([s[q] for s in sizes])
            tq = np.asarray(truth[q][idx], float)
            big = tq >= MIN_TRUE
            res[q] = {"mape": mape(tq, est), "n": int(idx.size),
                      "mape_ge4": mape(tq[big], est[big]) if big.any() else float("nan"),
                      "n_ge4": int(big.sum()),
                      "mean_true": float(np.mean(truth[q][idx])) if idx.size else None,
                      "linear": list(cal.linear[q]), "frac": cal.frac[kind]}
        rows += [(int(i), kind) for i in idx]
    res["mean_mape"] = float(np.nanmean([res[q]["mape"] for q in QUANTITIES if q in res]))
    return res


def overlay(image: np.ndarray, cam_up: np.ndarray, mask: np.ndarray, path, title: str,
            truth_mask: np.ndarray | None = None) -> None:
    """PNG: the image, the CAM as a heat map, the binarized region's outline and the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = np.asarray(image)
    img = img[..., 0] if img.ndim == 3 else img
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(img, cmap="gray", vmin=0, vmax=255)
    if truth_mask is not None and truth_mask.any():
        axes[0].contour(truth_mask, levels=[0.5], colors="lime", linewidths=0.8)
    axes[0].set_title("image, truth")
    axes[1].imshow(img, cmap="gray", vmin=0, vmax=255)
    axes[1].imshow(cam_up, cmap="jet", alpha=0.45)
    if mask.any():
        axes[1].contour(mask, levels=[0.5], colors="white", linewidths=0.8)
    axes[1].set_title("CAM, region")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
