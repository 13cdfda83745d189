"""The memory-mapped map cache that ``quant.datasets.stream`` builds, read back.

A cache folder holds ``meta.json``, ``labels.npy``, ``split.npy`` and one
``maps_<S>.u8`` per input size. ``open_cache(folder).maps(size)`` is a
read-only ``np.memmap`` [N][S][S][1] of every row (unlabelled ones too), and
``Cache.split(...)`` gives row indices of labelled train/test maps, so
training reads batches from the memory map (``quant.fit`` converts batch by
batch) and an epoch over 170k maps needs no more memory than a batch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quant.datasets import wm811k


class Rows:
    """Rows ``rows`` of a memory map, indexable like an array (ints, slices,
    index arrays) without copying the rest."""

    def __init__(self, mm: np.ndarray, rows: np.ndarray):
        self.mm, self.rows = mm, np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), *mm.shape[1:])
        self.dtype = mm.dtype

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, idx):
        sel = self.rows[idx]
        if np.ndim(sel) == 0:
            return np.asarray(self.mm[int(sel)])
        order = np.argsort(sel)                      # read the file forward
        out = np.empty((len(sel), *self.mm.shape[1:]), dtype=self.mm.dtype)
        out[order] = self.mm[sel[order]]
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[np.arange(len(self))]
        return a if dtype is None else a.astype(dtype)


class Cache:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.labels = np.load(self.folder / "labels.npy")
        self.split_codes = np.load(self.folder / "split.npy")

    def maps(self, size: int) -> np.memmap:
        if size not in self.meta["sizes"]:
            raise ValueError(f"{self.folder}: no cache at {size}x{size} (has {self.meta['sizes']})")
        return np.memmap(self.folder / f"maps_{size}.u8", dtype=np.uint8, mode="r",
                         shape=(self.meta["rows"], size, size, 1))

    def split(self, n_classes: int = 9, test_fraction: float = 0.2, seed: int = 0):
        """(train_rows, test_rows) of labelled maps: the file's Test rows, or a
        stratified split when it has none (as ``wm811k.from_frame``)."""
        keep = self.labels >= 0
        if n_classes == 8:
            keep &= self.labels != wm811k.NONE_INDEX
        rows = np.flatnonzero(keep)
        split = self.split_codes[rows].astype(np.int64)
        if not (split == 1).any():
            split[:] = -1
        free = split < 0
        if free.any():
            rng = np.random.default_rng(seed)
            split[free] = np.where(wm811k._stratified_test(self.labels[rows][free], test_fraction, rng), 1, 0)
        return rows[split == 0], rows[split == 1]

    def arrays(self, size: int, n_classes: int = 9, seed: int = 0):
        """(x_train, y_train, x_test, y_test): ``Rows`` views of the memory map and labels."""
        mm = self.maps(size)
        tr, te = self.split(n_classes, seed=seed)
        return (Rows(mm, tr), self.labels[tr].astype(np.int64), Rows(mm, te), self.labels[te].astype(np.int64))


def open_cache(folder: Path) -> Cache:
    return Cache(folder)
