"""Test-time views: a wafer map classified as the sum of the integer logits
of its eight turns and flips.

Every WM-811K class keeps its name under a quarter turn or a mirror (a
scratch stays a scratch, an edge ring an edge ring), so training already
augments with all eight; at inference the same eight views of one map
disagree on hard maps, and their summed logits are right more often than any
one of them. On real held-out maps this is worth one to three points
(docs/REAL_MAPS.md, Eight views), for eight times the accelerator work per
map.

The accelerator is unchanged: the host sends the eight views as eight images
of one INFER_BATCH and adds the integer logits it gets back, so the result
is exact and the C simulation stays bit-exact view by view. ``model.json``
says how many views its model was evaluated with (``views``: 1 or 8).

Numpy only: the STM32MP1 host runs it on every batch.
"""
from __future__ import annotations

import numpy as np

ALLOWED = (1, 8)


def check(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n not in ALLOWED:
        raise ValueError(f"views must be 1 or 8 (the eight turns and flips), not {n!r}")
    return n


def expand(x: np.ndarray, n: int) -> np.ndarray:
    """Maps [N][H][W](...) -> views [N*n][H][W](...), the ``n`` views of each
    map next to each other: identity, mirror, then each quarter turn and its
    mirror. The mirror flips the columns; the turns need square maps."""
    x = np.asarray(x)
    if check(n) == 1:
        return x
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"views need square maps, got {x.shape[1]}x{x.shape[2]}")
    out = []
    for k in range(4):
        r = np.rot90(x, k, axes=(1, 2))
        out += [r, r[:, :, ::-1]]
    # [views][N]... -> [N][views]... -> [N*views]...
    return np.ascontiguousarray(np.stack(out, axis=1).reshape((-1,) + x.shape[1:]))


def combine(logits: np.ndarray, n: int) -> np.ndarray:
    """Integer logits of the views [N*n][K] -> per map [N][K] int64 sums."""
    z = np.asarray(logits, dtype=np.int64)
    if z.shape[0] % check(n):
        raise ValueError(f"{z.shape[0]} view results are not a whole number of maps of {n} views")
    return z.reshape(-1, n, z.shape[1]).sum(axis=1)


def combine_records(status: np.ndarray, logits: np.ndarray, messages: dict, n: int, ok: int):
    """Per-view records of a batch -> per-map (status [N], class [N], logits
    [N][K], messages by map index). A map is ``ok`` only when all its views
    are; otherwise it takes its first failing view's status and message, so
    a bad view never turns into a confident class. The class is the first
    largest summed logit, the accelerator's own tie rule."""
    st = np.asarray(status).reshape(-1, check(n))
    bad = st != ok
    first = bad.argmax(axis=1)
    map_status = np.where(bad.any(axis=1), st[np.arange(len(st)), first], ok).astype(st.dtype)
    z = combine(logits, n)
    z[map_status != ok] = 0
    classes = z.argmax(axis=1)
    msgs = {int(m): messages.get(int(m) * n + int(first[m]), "")
            for m in np.flatnonzero(map_status != ok)}
    return map_status, classes, z, msgs
