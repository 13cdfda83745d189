"""Wafer map -> model input. Training (``quant.train``) imports this same
function, so the board sees exactly the pixels the network was trained on.

Pure numpy: it runs on the STM32MP1 host.

A wafer map is a 2-D array of die categories (0 = no die, 1 = pass, 2 = fail)
or an already grayscale uint8 image. Categories become the grayscale codes
0, 128, 255. Maps come in many sizes, so the map is padded with "no die" to a
square (centred; the aspect ratio is kept) and then resized by the largest
code under each output pixel (``resize_keep_dies``): every pixel stays one of
the input codes, so no interpolation invents a category that was not measured,
and shrinking a large map keeps its failing dies (nearest neighbour, as in the
paper's "scale and crop", dropped most of them on 200-die rows).
"""
from __future__ import annotations

import numpy as np

from protocol.stream import DIE_PIXEL_CODES

# Pixel codes of die states 0 (no die), 1 (pass), 2 (fail); the stream
# protocol's PACK_DIE2 carries the states and the core maps them back.
CATEGORY_CODES = np.array(DIE_PIXEL_CODES, dtype=np.uint8)


def is_category_map(map2d: np.ndarray) -> bool:
    """True for die-category maps (values 0..2); a grayscale image uses 0..255.

    An image whose pixels are all <= 2 is read as categories: such an image is
    black anyway, and WM-811K maps are the common case.
    """
    a = np.asarray(map2d)
    return a.size == 0 or (a.min() >= 0 and a.max() <= 2)


def to_gray(map2d) -> np.ndarray:
    a = np.asarray(map2d)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"a wafer map must be 2-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError("empty wafer map")
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError("wafer map has non-integer values")
    elif a.dtype.kind not in "iu":
        raise ValueError(f"wafer map has dtype {a.dtype}, expected integers")
    if a.min() < 0 or a.max() > 255:
        raise ValueError(f"wafer map values {a.min()}..{a.max()} are outside 0..255")
    if is_category_map(a):
        return CATEGORY_CODES[a.astype(np.intp)]
    return a.astype(np.uint8)


def pad_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    out = np.zeros((n, n), dtype=img.dtype)
    out[top:top + h, left:left + w] = img
    return out


def resize_nearest(img: np.ndarray, size: int) -> np.ndarray:
    # Sample at pixel centres so up- and down-scaling stay symmetric.
    h, w = img.shape
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.intp), w - 1)
    return img[rows[:, None], cols[None, :]]


def resize_keep_dies(img: np.ndarray, size: int) -> np.ndarray:
    """Resize where each output pixel is the largest code of the source pixels
    it covers: shrinking a 200-die row to 64 pixels keeps every failing die
    (fail 255 > pass 128 > no die 0) instead of dropping two dies in three, as
    nearest neighbour does. Growing a map repeats pixels, as nearest does.
    Exact integer block bounds, so host and training agree to the pixel."""
    h, w = img.shape
    r0 = (np.arange(size) * h) // size
    c0 = (np.arange(size) * w) // size
    # reduceat takes the max of a[start_i:start_i+1] .. up to the next start;
    # where the next start does not move on (upscaling) it returns a[start_i].
    out = np.maximum.reduceat(img, r0, axis=0)
    return np.maximum.reduceat(out, c0, axis=1)


def to_model_input(map2d, size: int) -> np.ndarray:
    """2-D wafer map -> uint8 ``size x size x 1`` (HWC) model input."""
    return resize_keep_dies(pad_square(to_gray(map2d)), size)[..., None]
