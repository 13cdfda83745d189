"""NPY, NPZ and grayscale PNG readers.

Pickled (object) arrays are refused: loading them would run code from the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def split(arr: np.ndarray) -> list[np.ndarray]:
    if arr.dtype == object:
        raise ValueError("object arrays are not supported (save the maps as an N x H x W array)")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        return list(arr)
    raise ValueError(f"expected a H x W map or an N x H x W stack, got shape {arr.shape}")


def read_npy(path: Path, **_):
    arr = np.load(path, allow_pickle=False)
    return split(arr), None


def read_npz(path: Path, **_):
    with np.load(path, allow_pickle=False) as z:
        keys = z.files
        key = "x" if "x" in keys else "arr_0" if "arr_0" in keys else None
        if key is None:
            raise ValueError(f"no 'x' or 'arr_0' array (keys: {', '.join(keys) or 'none'})")
        maps = split(z[key])
        y = z["y"] if "y" in keys else None
    return maps, y


def read_png(path: Path, **_):
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "P", "1", "I;16", "I"):
            raise ValueError(f"PNG mode {im.mode}: expected a grayscale image")
        arr = np.asarray(im.convert("L") if im.mode != "P" else im)
    return [arr], None
