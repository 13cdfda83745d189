"""Wafer-map file readers: NPY, NPZ, grayscale PNG, WM-811K rows (JSON, and
LSWMD pickles when pandas is there), SEMI G85 XML maps and STDF V4 files.

Every reader returns die-category maps (0 = no die, 1 = pass, 2 = fail) or
grayscale images, which ``preprocess.to_model_input`` turns into model input.
A file that cannot be read yields one ``Failure`` naming the file and the
reason, so one corrupt file never stops a run.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from host_stm32mp1.readers import arrays, g85, stdf, wm811k

# Longest suffixes first: ".stdf.gz" must win over ".gz".
_READERS = {
    ".stdf.gz": stdf.read, ".std.gz": stdf.read, ".stdf": stdf.read, ".std": stdf.read,
    ".npy": arrays.read_npy, ".npz": arrays.read_npz, ".png": arrays.read_png,
    ".json": wm811k.read_json, ".pkl": wm811k.read_pickle, ".pickle": wm811k.read_pickle,
    ".xml": g85.read, ".g85": g85.read,
}
SUFFIXES = tuple(_READERS)


@dataclass
class Item:
    source: str
    index: int              # position inside the file (0 for single maps)
    map: np.ndarray         # 2-D
    label: int | None = None
    label_name: str | None = None   # class name from the file (WM-811K failureType)
    file_sha256: str | None = None  # of the raw file bytes: the store's key with index
    meta: dict = field(default_factory=dict)


@dataclass
class Failure:
    source: str
    index: int | None
    reason: str
    file_sha256: str | None = None


def reader_for(path) -> tuple[str, object] | tuple[None, None]:
    name = Path(path).name.lower()
    for suffix, reader in _READERS.items():
        if name.endswith(suffix):
            return suffix, reader
    return None, None


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _labels(y, n: int) -> list:
    if y is None:
        return [None] * n
    if isinstance(y, list) and all(v is None or isinstance(v, (int, str)) for v in y):
        if len(y) != n:
            raise ValueError(f"{len(y)} labels for {n} maps")
        return list(y)
    y = np.asarray(y).ravel()
    if y.size != n:
        raise ValueError(f"'y' has {y.size} labels for {n} maps")
    if y.dtype.kind not in "iu":
        raise ValueError(f"'y' must hold integer class indices, got dtype {y.dtype}")
    return [int(v) for v in y]


def read_file(path, labels=None, allow_pickle: bool = False,
              pass_bins=None) -> Iterator[Item | Failure]:
    """Items of one file; ``labels`` (a list, one per map) overrides a file's own labels.

    Labels are class indices (int) or class names (str); names stay in
    ``label_name`` for the caller, who knows the model's classes.
    """
    path = Path(path)
    src = str(path)
    suffix, reader = reader_for(path)
    if reader is None:
        yield Failure(src, None, f"unsupported file type {path.suffix or '(none)'}: "
                      f"expected {', '.join(SUFFIXES)}")
        return
    digest = None
    try:
        digest = file_sha256(path)
        maps, y = reader(path, allow_pickle=allow_pickle, pass_bins=pass_bins)
        metas = [{}] * len(maps)
        if maps and isinstance(maps[0], tuple):  # readers with per-map metadata
            metas = [m[1] for m in maps]
            maps = [m[0] for m in maps]
        ys = _labels(labels if labels is not None else y, len(maps))
    except FileNotFoundError:
        yield Failure(src, None, "file not found")
        return
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        yield Failure(src, None, f"cannot read {suffix.lstrip('.').upper()} file: {e}", digest)
        return
    except Exception as e:  # any decoder fault is still just this file's failure
        yield Failure(src, None, f"cannot read file: {type(e).__name__}: {e}", digest)
        return
    for i, (m, lab, meta) in enumerate(zip(maps, ys, metas)):
        if isinstance(lab, str):
            yield Item(src, i, m, None, lab, digest, meta)
        else:
            yield Item(src, i, m, lab, None, digest, meta)


def read_files(paths, labels: dict | None = None, **kw) -> Iterator[Item | Failure]:
    labels = labels or {}
    for p in paths:
        lab = labels.get(str(p), labels.get(Path(p).name))
        if lab is not None and not isinstance(lab, list):
            lab = [lab]
        yield from read_file(p, lab, **kw)
