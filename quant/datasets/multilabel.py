"""Multi-label metrics for MixedWM38-style predictions. Pure numpy.

``y_true`` and ``y_pred`` are 0/1 arrays [N][L] (one column per label);
``scores_to_multi_hot`` turns per-label scores/probabilities into that.
Undefined ratios (0/0, e.g. precision of a label never predicted) are 0.
"""
from __future__ import annotations

import numpy as np


def _check(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must both be [N][L]")
    return t.astype(bool), p.astype(bool)


def _div(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def scores_to_multi_hot(scores, threshold: float = 0.5) -> np.ndarray:
    return (np.asarray(scores) >= threshold).astype(np.uint8)


def per_label(y_true, y_pred) -> dict[str, np.ndarray]:
    """float [L] precision, recall, f1; int64 [L] support, tp, fp, fn."""
    t, p = _check(y_true, y_pred)
    tp = (t & p).sum(0)
    fp = (~t & p).sum(0)
    fn = (t & ~p).sum(0)
    prec, rec = _div(tp, tp + fp), _div(tp, tp + fn)
    return dict(precision=prec, recall=rec, f1=_div(2 * prec * rec, prec + rec),
                support=t.sum(0).astype(np.int64), tp=tp.astype(np.int64),
                fp=fp.astype(np.int64), fn=fn.astype(np.int64))


def exact_match_ratio(y_true, y_pred) -> float:
    """Share of samples whose whole label set is right (subset accuracy)."""
    t, p = _check(y_true, y_pred)
    return float(np.all(t == p, axis=1).mean()) if len(t) else 0.0


def hamming_loss(y_true, y_pred) -> float:
    """Share of the N*L label decisions that are wrong."""
    t, p = _check(y_true, y_pred)
    return float((t != p).mean()) if t.size else 0.0


def report(y_true, y_pred, names=None) -> dict:
    """Everything above plus micro and macro F1, as plain Python values."""
    pl = per_label(y_true, y_pred)
    tp, fp, fn = pl["tp"].sum(), pl["fp"].sum(), pl["fn"].sum()
    mp, mr = float(_div(tp, tp + fp)), float(_div(tp, tp + fn))
    names = list(names) if names is not None else [str(j) for j in range(len(pl["f1"]))]
    return dict(
        exact_match=exact_match_ratio(y_true, y_pred),
        hamming_loss=hamming_loss(y_true, y_pred),
        micro_precision=mp, micro_recall=mr,
        micro_f1=float(_div(2 * mp * mr, mp + mr)),
        macro_f1=float(pl["f1"].mean()) if len(pl["f1"]) else 0.0,
        per_label={n: dict(precision=float(pl["precision"][j]), recall=float(pl["recall"][j]),
                           f1=float(pl["f1"][j]), support=int(pl["support"][j]))
                   for j, n in enumerate(names)},
    )
