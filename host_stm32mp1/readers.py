"""Wafer-map file readers: NPY, NPZ and grayscale PNG.

A file that cannot be read yields one ``Failure`` naming the file and the
reason, so one corrupt file never stops a run. Pickled (object) arrays are
refused: loading them would run code from the file.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

SUFFIXES = (".npy", ".npz", ".png")


@dataclass
class Item:
    source: str
    index: int              # position inside the file (0 for single maps)
    map: np.ndarray         # 2-D
    label: int | None = None


@dataclass
class Failure:
    source: str
    index: int | None
    reason: str


def _split(arr: np.ndarray, source: str) -> list[np.ndarray]:
    if arr.dtype == object:
        raise ValueError("object arrays are not supported (save the maps as an N x H x W array)")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        return list(arr)
    raise ValueError(f"expected a H x W map or an N x H x W stack, got shape {arr.shape}")


def _labels(y, n: int) -> list[int | None]:
    if y is None:
        return [None] * n
    y = np.asarray(y).ravel()
    if y.size != n:
        raise ValueError(f"'y' has {y.size} labels for {n} maps")
    if y.dtype.kind not in "iu":
        raise ValueError(f"'y' must hold integer class indices, got dtype {y.dtype}")
    return [int(v) for v in y]


def _read_npy(path: Path):
    arr = np.load(path, allow_pickle=False)
    return _split(arr, str(path)), None


def _read_npz(path: Path):
    with np.load(path, allow_pickle=False) as z:
        keys = z.files
        key = "x" if "x" in keys else "arr_0" if "arr_0" in keys else None
        if key is None:
            raise ValueError(f"no 'x' or 'arr_0' array (keys: {', '.join(keys) or 'none'})")
        maps = _split(z[key], str(path))
        y = z["y"] if "y" in keys else None
    return maps, y


def _read_png(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "P", "1", "I;16", "I"):
            raise ValueError(f"PNG mode {im.mode}: expected a grayscale image")
        arr = np.asarray(im.convert("L") if im.mode != "P" else im)
    return [arr], None


_READERS = {".npy": _read_npy, ".npz": _read_npz, ".png": _read_png}


def read_file(path, labels=None) -> Iterator[Item | Failure]:
    """Items of one file; ``labels`` (a list, one per map) overrides a file's 'y'."""
    path = Path(path)
    src = str(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        yield Failure(src, None, f"unsupported file type {path.suffix or '(none)'}: "
                      f"expected {', '.join(SUFFIXES)}")
        return
    try:
        maps, y = reader(path)
        ys = _labels(labels if labels is not None else y, len(maps))
    except FileNotFoundError:
        yield Failure(src, None, "file not found")
        return
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        yield Failure(src, None, f"cannot read {path.suffix[1:].upper()} file: {e}")
        return
    except Exception as e:  # any decoder fault is still just this file's failure
        yield Failure(src, None, f"cannot read file: {type(e).__name__}: {e}")
        return
    for i, (m, lab) in enumerate(zip(maps, ys)):
        yield Item(src, i, m, lab)


def read_files(paths, labels: dict | None = None) -> Iterator[Item | Failure]:
    labels = labels or {}
    for p in paths:
        lab = labels.get(str(p), labels.get(Path(p).name))
        if lab is not None and not isinstance(lab, list):
            lab = [lab]
        yield from read_file(p, lab)
