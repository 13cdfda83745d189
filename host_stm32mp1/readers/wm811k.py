"""WM-811K (LSWMD) rows.

The public ``LSWMD.pkl`` is a pandas pickle. The host does not depend on
pandas, and unpickling runs code from the file, so the supported production
format is a row exported as JSON::

    {"waferMap": [[0, 1, 2, ...], ...], "failureType": "Center",
     "lotName": "lot1", "waferIndex": 3, "dieSize": 1683}

(or a list of such objects). ``failureType`` may also be the nested form
the pickle stores (``[["Center"]]``) or empty (unlabelled). A bare
``waferMap`` saved with ``numpy.save`` is an ordinary NPY map.

The pickle itself is read only with ``--allow-pickle`` (trusted files) and
when pandas is importable; otherwise the error says how to convert it.
"""
from __future__ import annotations

import io
import json

import numpy as np

from host_stm32mp1.readers.limits import MAX_JSON_BYTES, check_shape

META_KEYS = ("lotName", "waferIndex", "dieSize", "trianTestLabel")


def _label_name(value) -> str | None:
    # The pickle nests labels as [['Center']]; an empty array means unlabelled.
    while isinstance(value, (list, tuple, np.ndarray)):
        if len(value) == 0:
            return None
        value = value[0]
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _meta_value(v):
    name = _label_name(v) if isinstance(v, (list, tuple, np.ndarray)) else v
    if isinstance(name, np.generic):
        return name.item()
    return name


def _row(row, where: str):
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a WM-811K row must be an object with 'waferMap'")
    if "waferMap" not in row:
        raise ValueError(f"{where}: no 'waferMap' (keys: {', '.join(map(str, row)) or 'none'})")
    try:
        m = np.asarray(row["waferMap"])
    except ValueError as e:  # ragged rows
        raise ValueError(f"{where}: 'waferMap' is not a rectangular array: {e}") from None
    if m.ndim != 2 or m.dtype.kind not in "iuf":
        raise ValueError(f"{where}: 'waferMap' must be a 2-D array of numbers, got shape {m.shape}")
    check_shape(*m.shape, where=f"{where}: 'waferMap'")
    if m.size and (m.min() < 0 or m.max() > 2):
        raise ValueError(f"{where}: 'waferMap' values must be 0 (no die), 1 (pass) or 2 (fail)")
    meta = {k: _meta_value(row[k]) for k in META_KEYS if k in row}
    if meta.get("lotName") is not None:
        meta["lot_id"] = str(meta["lotName"])
    if meta.get("waferIndex") is not None:
        w = meta["waferIndex"]
        meta["wafer_id"] = str(int(w)) if isinstance(w, float) and w.is_integer() else str(w)
    return (m.astype(np.uint8), meta), _label_name(row.get("failureType"))


def read_json(data: bytes, **_):
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"JSON file larger than {MAX_JSON_BYTES >> 20} MiB (export fewer rows a file)")
    try:
        data = json.loads(data)
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text: {e.reason} at byte {e.start}") from None
    if isinstance(data, dict) and "rows" in data:
        data = data["rows"]
    rows = data if isinstance(data, list) else [data]
    if not rows:
        raise ValueError("no rows")
    out = [_row(r, f"row {i}") for i, r in enumerate(rows)]
    labels = [lab for _, lab in out]
    return [m for m, _ in out], (labels if any(lab is not None for lab in labels) else None)


def read_pickle(data: bytes, allow_pickle: bool = False, **_):
    if not allow_pickle:
        raise ValueError("pickles run code when loaded: pass --allow-pickle for a trusted "
                         "LSWMD.pkl, or export its rows as JSON (see host_stm32mp1/readers/wm811k.py)")
    try:
        import pandas as pd
    except ImportError:
        raise ValueError("reading LSWMD.pkl needs pandas, which this host does not have; "
                         "export the rows as JSON on a machine with pandas") from None
    # pandas' read_pickle maps the old module paths the 2017 file was written with.
    df = pd.read_pickle(io.BytesIO(data))
    if not hasattr(df, "iterrows") or "waferMap" not in getattr(df, "columns", ()):
        raise ValueError("not an LSWMD-style DataFrame with a 'waferMap' column")
    out = [_row(dict(r), f"row {i}") for i, (_, r) in enumerate(df.iterrows())]
    labels = [lab for _, lab in out]
    return [m for m, _ in out], (labels if any(lab is not None for lab in labels) else None)
