"""The reject option's rule, applied per map: calibrated at training
(``quant.metrics.calibrate_reject``), carried in ``export/model.json`` under
``reject``, applied here by the host and by training's own evaluation.

Numpy only: the STM32MP1 host runs it on every result.
"""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# Share of the real validation maps each out-of-distribution test may turn
# away; the tests' limits sit at these quantiles of the validation maps.
OOD_QUANTILE = 0.005
CODES = (0, 128, 255)
# Spatial frequencies (cycles per input pixel) at and above which a map's
# failing dies should carry no single strong component: periods of 12 pixels
# or less. Real defect clusters keep their energy below this; a reticle-
# periodic or striped failure (outside the nine classes) puts it in a peak.
PERIODIC_MIN_FREQ = 1 / 12


def periodicity(a: np.ndarray) -> np.ndarray:
    """Per map [N][H][W] of die codes: the largest share of the failing-die
    field's power (failing 1, passing 0, mean removed over the dies, 0 off the
    wafer) that one frequency at or above ``PERIODIC_MIN_FREQ`` holds. About
    0.005 for real WM-811K maps of every class (99.5% under 0.03); 0.1 and up
    for checkerboards and stripes of failing dies. 0 when no or every die fails."""
    n, h, w = a.shape
    high = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]) >= PERIODIC_MIN_FREQ
    die = a > 0
    fail = (a == 255).astype(np.float64)
    n_die = die.sum(axis=(1, 2))
    p = fail.sum(axis=(1, 2)) / np.maximum(n_die, 1)
    # One batched FFT over the maps (the host runs this on every result).
    power = np.abs(np.fft.fft2(np.where(die, fail - p[:, None, None], 0.0))[:, high]) ** 2
    total = power.sum(axis=1)
    ok = (n_die > 0) & (p > 0.0) & (p < 1.0) & (total > 0)
    return np.where(ok, power.max(axis=1) / np.where(ok, total, 1.0), 0.0)


def input_features(x) -> dict:
    """Per-map features of uint8 model inputs [N][S][S](1) that tell a wafer
    map from other images: ``off_code`` (share of pixels that are not a die
    code 0/128/255: photos, gradients), ``die`` (share of pixels that are dies:
    an empty grid has none) and ``outside`` (share of the die pixels outside
    the ellipse inscribed in their bounding box: a wafer is round or nearly, a
    full rectangular grid is not) and ``periodic`` (``periodicity``: a
    regular pattern of failing dies, which no real class has)."""
    a = np.asarray(x)
    if a.ndim == 4:
        a = a[..., 0]
    if a.ndim == 2:
        a = a[None]
    n, h, w = a.shape
    off = ~np.isin(a, CODES)
    die = a > 0
    ys, xs = (np.arange(h) + 0.5)[:, None], (np.arange(w) + 0.5)[None, :]
    outside = np.zeros(n)
    for i in range(n):
        r, c = np.nonzero(die[i])
        if not r.size:
            continue
        cy, cx = (r.min() + r.max() + 1) / 2, (c.min() + c.max() + 1) / 2
        ry, rx = (r.max() + 1 - r.min()) / 2, (c.max() + 1 - c.min()) / 2
        ell = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 > 1.0
        outside[i] = (die[i] & ell).sum() / r.size
    return {"off_code": off.reshape(n, -1).mean(1), "die": die.reshape(n, -1).mean(1), "outside": outside,
            "periodic": periodicity(a)}


def energy(logits: np.ndarray) -> np.ndarray:
    """log-sum-exp of the logits: low for inputs unlike anything seen in training."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(1)
    return m + np.log(np.exp(z - m[:, None]).sum(1))


REASONS = ("not a wafer map", "out of distribution", "low confidence")


def reject_reasons(logits: np.ndarray, reject: dict, inputs=None) -> list:
    """Per map: None (accepted) or why it goes to review, first reason that
    applies in ``REASONS`` order. ``inputs`` (the uint8 model inputs) enable
    the input tests when ``reject`` has ``input`` limits. Pure numpy, for the
    host: ``reject`` is model.json["reject"]."""
    logits = np.asarray(logits, dtype=np.float64)
    n = len(logits)
    bad_input = np.zeros(n, dtype=bool)
    ood = energy(logits) < reject["min_energy"] if "min_energy" in reject else np.zeros(n, dtype=bool)
    lim = reject.get("input")
    if lim is not None and inputs is not None:
        f = input_features(inputs)
        bad_input = ((f["off_code"] > lim["max_off_code"]) | (f["die"] < lim["min_die"])
                     | (f["outside"] > lim["max_outside"]))
        # A wafer map, but with a pattern no class has: out of distribution.
        # (Limits calibrated before this test existed have no max_periodic.)
        if "max_periodic" in lim:
            ood = ood | (f["periodic"] > lim["max_periodic"])
    low = softmax(logits, reject["temperature"]).max(1) < reject["threshold"]
    return [REASONS[0] if b else REASONS[1] if o else REASONS[2] if lo else None
            for b, o, lo in zip(bad_input, ood, low)]
