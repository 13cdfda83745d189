"""The real WM-811K file (``LSWMD.pkl``) as training data.

``LSWMD.pkl`` is a pickled pandas DataFrame of about 811k rows with the
columns ``waferMap`` (2-D uint8 die categories: 0 = no die, 1 = pass,
2 = fail; shapes from about 25x26 to over 200x80), ``dieSize``, ``lotName``,
``waferIndex``, ``trianTestLabel`` (sic) and ``failureType``. The last two
hold nested arrays such as ``[['Training']]`` / ``[['Center']]``, or an empty
array when the wafer is unlabeled.

Labels are always indices into ``contract.spec.WAFER_CLASSES``. ``EIGHT_CLASSES``
is ``WAFER_CLASSES[:8]`` (every class but ``none``), so with ``n_classes=8``
the same index also indexes ``EIGHT_CLASSES``: one label space for both.

pandas is imported lazily (it is an optional, training-only dependency) and
unpickling runs code from the file: read trusted files only.

Legacy-pickle shim (``read_frame``)
-----------------------------------
The file was written by an old pandas (0.19-era) and may be a Python 2
pickle. ``read_frame`` tries, in order:

1. ``pandas.read_pickle`` (modern files; pandas' own compat covers some moves);
2. ``_LegacyUnpickler``: pandas' ``pickle_compat.Unpickler`` (its renamed-class
   table, its NEWOBJ handling of argument-less ``BlockManager``/``Index``, its
   REDUCE fallbacks) plus ``_legacy_location`` below, which also rewrites

   * ``pandas.indexes.<mod>.<name>`` -> ``pandas.core.indexes.<mod>.<name>``
     (0.18-0.19 layout; whole package, not only the names pandas lists);
   * ``pandas.core.index.<name>`` -> ``pandas.core.indexes.base`` (<= 0.17);
   * ``Int64Index``/``UInt64Index``/``Float64Index`` (any of those modules)
     -> ``Index`` (removed in pandas 2.0; the data keep their dtype);
   * ``pandas.core.internals.<Manager>`` -> ``pandas.core.internals.managers``
     (the 0.14.1-0.25 ``BlockManager`` pickle state, a 4-tuple whose last
     item is ``{'0.14.1': {'axes', 'blocks'}}``, is still understood by the
     modern ``BlockManager.__setstate__``);
   * ``pandas.core.base.FrozenNDArray`` / ``pandas.indexes.frozen`` -> numpy.

   It first decodes Python 2 ``str`` as ASCII and, on ``UnicodeDecodeError``,
   re-reads with ``encoding='latin1'`` (what numpy needs for py2 array bytes).

Checked (tests/test_datasets_wm811k.py, on pickles built in that format):
plain ``pickle.load`` fails on 0.19-era bytes with ``ModuleNotFoundError:
No module named 'pandas.indexes'``; pandas 2.3's ``read_pickle`` reads them
through its own table, but not 0.17-era ``pandas.core.index`` paths, which
only step 2 reads.

No ``sys.modules`` aliases are installed: the mapping lives in the
Unpickler's ``find_class``, so nothing global changes for other code.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.spec import WAFER_CLASSES

EIGHT_CLASSES = WAFER_CLASSES[:8]
NONE_INDEX = WAFER_CLASSES.index("none")
SPLITS = ("train", "test")
_SPLIT_NAMES = {"training": 0, "train": 0, "test": 1}
_CANON = {c.lower().replace("_", "-").replace(" ", "-"): i for i, c in enumerate(WAFER_CLASSES)}
_REMOVED_INDEXES = {"Int64Index", "UInt64Index", "Float64Index"}


def _legacy_location(module: str, name: str) -> tuple[str, str]:
    """Where a class or function of an old pandas lives now (see module doc)."""
    if name in _REMOVED_INDEXES and module.startswith("pandas"):
        return "pandas.core.indexes.base", "Index"
    if module == "pandas.indexes.frozen" and name == "FrozenNDArray":
        return "numpy", "ndarray"
    if module == "pandas.indexes" or module.startswith("pandas.indexes."):
        return "pandas.core.indexes" + module[len("pandas.indexes"):], name
    if module == "pandas.core.index":
        return "pandas.core.indexes.base", name
    if module == "pandas.core.internals" and name.endswith("Manager"):
        return "pandas.core.internals.managers", name
    if module == "numpy._core" or module.startswith("numpy._core."):
        # numpy 2 renamed numpy.core to numpy._core; under numpy 1 only the old name exists.
        return _numpy_core(module), name
    return module, name


def _numpy_core(module: str) -> str:
    # numpy 1.26 ships an empty numpy._core package, so ask for the module itself.
    import importlib

    try:
        importlib.import_module(module)
        return module
    except ImportError:
        return "numpy.core" + module[len("numpy._core"):]


def _legacy_unpickler_class():
    from pandas.compat import pickle_compat as pc

    from pandas._libs.arrays import NDArrayBacked

    class _LegacyUnpickler(pc.Unpickler):
        def find_class(self, module, name):
            module, name = pc._class_locations_map.get((module, name), (module, name))
            return super().find_class(*_legacy_location(module, name))

        def load_build(self):
            # pandas 3 pickles an NDArray-backed array (its StringArray of a
            # ``str`` column) as the 2-tuple (dtype, ndarray); pandas 2 reads
            # only (ndarray, dtype, attributes).
            state, inst = self.stack[-1], self.stack[-2]
            if (isinstance(inst, NDArrayBacked) and isinstance(state, tuple) and len(state) == 2
                    and isinstance(state[1], np.ndarray)):
                self.stack[-1] = (state[1], state[0], {})
            super().load_build()

        dispatch = pc.Unpickler.dispatch.copy()
        dispatch[pickle.BUILD[0]] = load_build

    return _LegacyUnpickler


def loads_legacy(data: bytes):
    """Unpickle bytes with the legacy shim only (no ``pandas.read_pickle``)."""
    cls = _legacy_unpickler_class()
    try:
        return cls(io.BytesIO(data)).load()
    except UnicodeDecodeError:
        return cls(io.BytesIO(data), encoding="latin1").load()


def read_frame(path):
    """The DataFrame in ``path``: modern pandas pickles and old (0.19-era) ones."""
    import pandas as pd

    try:
        return pd.read_pickle(path)
    except (ImportError, AttributeError, TypeError, NotImplementedError, pickle.UnpicklingError):
        return loads_legacy(Path(path).read_bytes())


def _cell(value) -> str | None:
    # Cells nest like [['Center']]; an empty array (or NaN/None) means unlabeled.
    if value is None or (isinstance(value, float) and value != value):
        return None
    a = np.asarray(value, dtype=object).ravel()
    if a.size == 0:
        return None
    v = a[0]
    if isinstance(v, bytes):
        v = v.decode("latin1")
    v = str(v).strip()
    return v or None


def class_index(name: str | None) -> int | None:
    """Index into WAFER_CLASSES of a failureType string, or None if unknown."""
    if name is None:
        return None
    return _CANON.get(name.lower().replace("_", "-").replace(" ", "-"))


@dataclass
class WM811K:
    """One split. ``maps``: a list of raw 2-D uint8 die maps (``size=None``) or
    a uint8 array [N][size][size][1] of model input (``to_model_input``:
    pad to square, nearest neighbour, codes 0/128/255 only). ``labels``: int64
    [N], indices into ``WAFER_CLASSES`` (== ``EIGHT_CLASSES`` with 8 classes).
    ``rows``: int64 [N], row positions in the DataFrame."""

    maps: object
    labels: np.ndarray
    rows: np.ndarray
    classes: tuple[str, ...]


@dataclass
class Loaded:
    train: WM811K
    test: WM811K
    split_source: str  # "file", "stratified" or "mixed"
    skipped: dict = field(default_factory=dict)  # reason -> row count


def _stratified_test(labels: np.ndarray, frac: float, rng) -> np.ndarray:
    """Boolean [N]: True for rows drawn into the test split, per class."""
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * frac))
        if len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        test[idx[:k]] = True
    return test


def _cap(rows: np.ndarray, labels: np.ndarray, max_per_class, limit, rng) -> np.ndarray:
    keep = rng.permutation(len(rows))
    if max_per_class is not None:
        seen: dict[int, int] = {}
        sel = []
        for i in keep:
            c = int(labels[i])
            if seen.get(c, 0) < max_per_class:
                seen[c] = seen.get(c, 0) + 1
                sel.append(i)
        keep = np.asarray(sel, dtype=np.int64)
    if limit is not None:
        keep = keep[:limit]
    return np.sort(keep)


def from_frame(df, *, n_classes: int = 8, size: int | None = None, test_fraction: float = 0.2,
               seed: int = 0, max_per_class: int | None = None, limit: int | None = None) -> Loaded:
    """Labeled rows of an LSWMD DataFrame as train/test splits.

    Rows without a failureType (or with an unknown one, or ``none`` when
    ``n_classes == 8``) are skipped and counted in ``skipped``. A row keeps
    its ``trianTestLabel`` split when it has one; the others are split
    stratified by class, seeded (all rows are, when the file has no Test row). ``max_per_class`` caps each class in each
    split and ``limit`` each split's total, both by seeded random choice.
    """
    if n_classes not in (8, 9):
        raise ValueError(f"n_classes must be 8 or 9, got {n_classes}")
    classes = EIGHT_CLASSES if n_classes == 8 else WAFER_CLASSES
    if "waferMap" not in df.columns or "failureType" not in df.columns:
        raise ValueError("not an LSWMD DataFrame: needs 'waferMap' and 'failureType' columns")
    ft = df["failureType"].to_numpy()
    tt = df["trianTestLabel"].to_numpy() if "trianTestLabel" in df.columns else [None] * len(df)
    skipped = {"unlabeled": 0, "unknown class": 0, "none (8 classes)": 0}
    rows, labels, split = [], [], []
    for i, (f, t) in enumerate(zip(ft, tt)):
        name = _cell(f)
        if name is None:
            skipped["unlabeled"] += 1
            continue
        k = class_index(name)
        if k is None:
            skipped["unknown class"] += 1
            continue
        if k == NONE_INDEX and n_classes == 8:
            skipped["none (8 classes)"] += 1
            continue
        s = _cell(t)
        rows.append(i)
        labels.append(k)
        split.append(_SPLIT_NAMES.get(s.lower(), -1) if s else -1)
    rows, labels, split = (np.asarray(a, dtype=np.int64) for a in (rows, labels, split))
    rng = np.random.default_rng(seed)
    if not (split == 1).any():
        # A file of Training rows only (a public subset) has nothing held out:
        # split all of it, stratified, rather than train on everything.
        split[:] = -1
    free = split < 0
    if free.any():
        split[free] = np.where(_stratified_test(labels[free], test_fraction, rng), 1, 0)
    source = "file" if not free.any() else "stratified" if free.all() else "mixed"
    col = df["waferMap"].to_numpy()
    parts = []
    for s in (0, 1):
        sel = np.flatnonzero(split == s)
        sel = sel[_cap(rows[sel], labels[sel], max_per_class, limit, rng)]
        parts.append(WM811K(_maps(col, rows[sel], size), labels[sel], rows[sel], classes))
    return Loaded(parts[0], parts[1], source, {k: v for k, v in skipped.items() if v})


def _maps(col, rows: np.ndarray, size: int | None):
    maps = [np.asarray(col[r]).astype(np.uint8) for r in rows]
    for r, m in zip(rows, maps):
        if m.ndim != 2 or (m.size and m.max() > 2):
            raise ValueError(f"row {r}: waferMap must be 2-D with values 0..2, got shape {m.shape}")
    if size is None:
        return maps
    from contract.preprocess import to_model_input

    out = np.empty((len(maps), size, size, 1), dtype=np.uint8)
    for j, m in enumerate(maps):
        out[j] = to_model_input(m, size)
    return out


def load(path, **kw) -> Loaded:
    """``from_frame(read_frame(path), **kw)``; see ``from_frame`` for options."""
    return from_frame(read_frame(path), **kw)
