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

Size measurement (all in input pixels, the units of ``quant.buffer_synth``;
the pixel work is in ``quant.defect_size``):

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

``measure`` also offers ``defect_size.guided`` (the region picks the defect, its
pixels in the image give the size) and the image alone, as an ablation.

Pure numpy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from quant.defect_size import CRACK, EMC, crack_size, emc_depth, guided, mold_edge

QUANTITIES = ("crack_length", "crack_dx", "crack_dy", "emc_depth")
KIND_QUANTITIES = ((CRACK, ("crack_length", "crack_dx", "crack_dy")), (EMC, ("emc_depth",)))
# A quarter-resolution CAM cannot resolve sizes below one cell (4 px at input
# 64): an extent of 1 px measured as 3 px is a 200% error. ``evaluate``
# therefore also reports the MAPE over truths of at least MIN_TRUE px.
MIN_TRUE = 4.0


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
    for kind, quants in KIND_QUANTITIES:
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
    res = {}
    for kind, quants in KIND_QUANTITIES:
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
