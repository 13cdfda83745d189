"""MixedWM38-style ``.npz`` files: single and mixed wafer-map patterns.

Layout assumed (as in the public ``Wafer_Map_Datasets.npz``):

* ``arr_0``: uint8 [N][52][52] die maps, 0 = no die, 1 = pass, 2 = fail
  (the real file is 52x52; other square or rectangular sizes are accepted);
* ``arr_1``: [N][8] multi-hot labels, one column per basic pattern in the
  order ``MIXED_LABELS`` = Center, Donut, Edge-Loc, Edge-Ring, Loc,
  Near-full, Random, Scratch (C, D, EL, ER, L, NF, R, S). An all-zero row is
  a normal wafer. This order equals ``WAFER_CLASSES[:8]``, so column j is
  class j of ``contract.spec.WAFER_CLASSES``.

Pure numpy: no pickle is involved (``allow_pickle=False``).
"""
from __future__ import annotations

import numpy as np

from contract.spec import WAFER_CLASSES

MIXED_LABELS = WAFER_CLASSES[:8]
SHORT_NAMES = ("C", "D", "EL", "ER", "L", "NF", "R", "S")


def validate(maps: np.ndarray, labels: np.ndarray) -> None:
    if maps.ndim != 3:
        raise ValueError(f"arr_0 must be [N][H][W] maps, got shape {maps.shape}")
    if labels.ndim != 2 or labels.shape[1] != len(MIXED_LABELS):
        raise ValueError(f"arr_1 must be [N][8] multi-hot labels, got shape {labels.shape}")
    if len(maps) != len(labels):
        raise ValueError(f"{len(maps)} maps but {len(labels)} label rows")
    if maps.size and (maps.min() < 0 or maps.max() > 2):
        raise ValueError(f"map values must be 0..2, got {maps.min()}..{maps.max()}")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1 multi-hot")


def load(path, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps, labels): maps uint8 [N][H][W] (raw categories) or, with ``size``,
    uint8 [N][size][size][1] model input (``to_model_input``, nearest
    neighbour, codes 0/128/255); labels uint8 [N][8] in ``MIXED_LABELS`` order."""
    with np.load(path, allow_pickle=False) as z:
        if "arr_0" not in z or "arr_1" not in z:
            raise ValueError(f"{path}: needs arrays 'arr_0' (maps) and 'arr_1' (labels), has {sorted(z)}")
        maps, labels = np.asarray(z["arr_0"]), np.asarray(z["arr_1"])
    validate(maps, labels)
    maps, labels = maps.astype(np.uint8), labels.astype(np.uint8)
    if size is not None:
        from contract.preprocess import to_model_input

        maps = np.stack([to_model_input(m, size) for m in maps]) if len(maps) else \
            np.zeros((0, size, size, 1), np.uint8)
    return maps, labels


def save(path, maps, labels) -> None:
    """Write ``maps`` (equal-shape 2-D category maps) and multi-hot ``labels``
    in the MixedWM38 layout."""
    maps, labels = np.asarray(maps), np.asarray(labels)
    validate(maps, labels)
    np.savez_compressed(path, arr_0=maps.astype(np.uint8), arr_1=labels.astype(np.uint8))


def combination_name(row) -> str:
    """'C+EL+S' style name of one multi-hot row; 'Normal' for all zeros."""
    parts = [SHORT_NAMES[j] for j in np.flatnonzero(np.asarray(row))]
    return "+".join(parts) if parts else "Normal"


def combination_ids(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Multi-hot rows -> (int64 [N] ids, names): one id per distinct
    combination, ids in sorted-name order, for stratification and reports."""
    names = [combination_name(r) for r in labels]
    uniq = sorted(set(names))
    pos = {n: i for i, n in enumerate(uniq)}
    return np.array([pos[n] for n in names], dtype=np.int64), uniq


def single_class_labels(labels: np.ndarray) -> np.ndarray:
    """int64 [N]: index into WAFER_CLASSES for rows with one pattern, ``none``
    (8) for all-zero rows, -1 for mixtures (which a 9-way classifier cannot name)."""
    labels = np.asarray(labels)
    k = labels.sum(axis=1)
    out = np.where(k == 0, WAFER_CLASSES.index("none"), -1).astype(np.int64)
    single = k == 1
    out[single] = labels[single].argmax(axis=1)
    return out
