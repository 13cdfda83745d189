"""Wafer-map file readers: NPY, NPZ, grayscale PNG, WM-811K rows (JSON, and
LSWMD pickles when pandas is there), SEMI G85 and SEMI E142 XML maps and
STDF V4 files.

Every reader returns die-category maps (0 = no die, 1 = pass, 2 = fail) or
grayscale images, which ``preprocess.to_model_input`` turns into model input.
A file that cannot be read yields one ``Failure`` naming the file and the
reason, so one corrupt file never stops a run.

A file is opened once and read into memory once (``load``): the SHA-256 that
keys the store and the parse see the same bytes, even if the file is swapped
meanwhile. Readers take those bytes, never the path.
"""
from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from host_stm32mp1.readers import arrays, stdf, wm811k, xmlmaps
from host_stm32mp1.readers.limits import MAX_FILE_BYTES, Incomplete

# Longest suffixes first: ".stdf.gz" must win over ".gz".
_READERS = {
    ".stdf.gz": stdf.read, ".std.gz": stdf.read, ".stdf": stdf.read, ".std": stdf.read,
    ".npy": arrays.read_npy, ".npz": arrays.read_npz, ".png": arrays.read_png,
    ".json": wm811k.read_json, ".pkl": wm811k.read_pickle, ".pickle": wm811k.read_pickle,
    ".xml": xmlmaps.read, ".g85": xmlmaps.read, ".e142": xmlmaps.read,
}
SUFFIXES = tuple(_READERS)
# Identity of a map, in every output (CSV, store, report, JSON); None where the format has none.
IDENTITY = ("lot_id", "wafer_id", "tester", "part")


@dataclass
class Item:
    source: str
    index: int              # position inside the file (0 for single maps)
    map: np.ndarray         # 2-D
    label: int | None = None
    label_name: str | None = None   # class name from the file (WM-811K failureType)
    file_sha256: str | None = None  # of the raw file bytes: the store's key with index
    meta: dict = field(default_factory=dict)   # identity (IDENTITY keys), format extras, "warnings"


@dataclass
class Failure:
    source: str
    index: int | None
    reason: str
    file_sha256: str | None = None
    meta: dict = field(default_factory=dict)
    incomplete: bool = False   # the file ends early: maybe still being written


@dataclass
class Loaded:
    """One file's bytes, read through one descriptor, and what fstat said of it then."""
    data: bytes
    sha256: str
    size: int
    mtime_ns: int
    ino: int


class ReadError(ValueError):
    pass


def reader_for(path) -> tuple[str, object] | tuple[None, None]:
    name = Path(path).name.lower()
    for suffix, reader in _READERS.items():
        if name.endswith(suffix):
            return suffix, reader
    return None, None


def load(path, follow_symlinks: bool = True) -> Loaded:
    """Open once (``O_NOFOLLOW`` unless ``follow_symlinks``), check with fstat that
    it is a regular file of at most MAX_FILE_BYTES, read it whole. ReadError if not."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ReadError("file not found") from None
    except IsADirectoryError:
        raise ReadError("is a folder, not a map file") from None
    except OSError as e:
        if not follow_symlinks and os.path.islink(path):
            raise ReadError("is a symbolic link: not followed in a watched folder") from None
        raise ReadError(f"cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ReadError("is a folder, not a map file")
        if not stat.S_ISREG(st.st_mode):
            raise ReadError("is not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ReadError(f"{st.st_size} bytes: larger than the {MAX_FILE_BYTES >> 20} MiB "
                            "limit for one map file")
        chunks, left = [], MAX_FILE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ReadError(f"grew past the {MAX_FILE_BYTES >> 20} MiB limit while being read")
    return Loaded(data, hashlib.sha256(data).hexdigest(), st.st_size, st.st_mtime_ns, st.st_ino)


def file_sha256(path) -> str:
    return load(path).sha256


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


def read_file(path, labels=None, allow_pickle: bool = False, pass_bins=None,
              allow_incomplete: bool = False, loaded: Loaded | None = None,
              follow_symlinks: bool = True) -> Iterator[Item | Failure]:
    """Items of one file; ``labels`` (a list, one per map) overrides a file's own labels.

    Labels are class indices (int) or class names (str); names stay in
    ``label_name`` for the caller, who knows the model's classes. ``loaded``:
    bytes already read (``watch`` reads them itself, to check the file after).
    """
    path = Path(path)
    src = str(path)
    suffix, reader = reader_for(path)
    if reader is None:
        if path.is_dir():
            yield Failure(src, None, "is a folder, not a map file")
            return
        yield Failure(src, None, f"unsupported file type {path.suffix or '(none)'}: "
                      f"expected {', '.join(SUFFIXES)}")
        return
    digest = loaded.sha256 if loaded is not None else None
    kind = suffix.lstrip(".").upper()
    try:
        if loaded is None:
            loaded = load(path, follow_symlinks)
            digest = loaded.sha256
        if not loaded.data:
            raise ReadError("empty file (0 bytes)")
        maps, y = reader(loaded.data, allow_pickle=allow_pickle, pass_bins=pass_bins,
                         allow_incomplete=allow_incomplete, name=path.name)
        if len(maps) == 0:
            raise ReadError("the file holds no maps")
        metas = [{}] * len(maps)
        if isinstance(maps[0], tuple):  # readers with per-map metadata
            metas = [m[1] for m in maps]
            maps = [m[0] for m in maps]
        ys = _labels(labels if labels is not None else y, len(maps))
    except ReadError as e:
        yield Failure(src, None, str(e), digest)
        return
    except Incomplete as e:
        yield Failure(src, None, f"cannot read {kind} file: {e}", digest, incomplete=True)
        return
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        yield Failure(src, None, f"cannot read {kind} file: {e}", digest)
        return
    except Exception as e:  # any decoder fault is still just this file's failure
        yield Failure(src, None, f"cannot read {kind} file: {type(e).__name__}: {e}", digest)
        return
    for i, (m, lab, meta) in enumerate(zip(maps, ys, metas)):
        if meta.get("error"):   # one map of the file refused (e.g. a wafer with no end record)
            yield Failure(src, i, meta["error"], digest,
                          {k: v for k, v in meta.items() if k not in ("error", "incomplete")},
                          bool(meta.get("incomplete")))
        elif isinstance(lab, str):
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
