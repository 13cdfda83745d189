"""Classification metrics, the open-set reject option, and the report files.

Pure numpy except the plots (matplotlib, imported when drawing).
Labels and predictions are class indices; ``-1`` in predictions means
"review" (rejected by the confidence threshold).
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

# The rule that applies a calibrated reject option is the host's as well (it
# has no torch and no quant): one copy, in contract/reject.py.
from contract.reject import (CODES, OOD_QUANTILE, REASONS, energy,  # noqa: F401
                                  input_features, reject_reasons, softmax)

REVIEW = -1


def confusion(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    keep = pred >= 0
    np.add.at(cm, (y[keep], pred[keep]), 1)
    return cm


def summary(y: np.ndarray, pred: np.ndarray, classes) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and per-class precision/recall/F1
    (rejected maps excluded).

    Balanced accuracy is the mean recall over the classes present: what a test
    set with as many maps of each class would score. A fab's own split is
    dominated by a few classes (Edge-Loc and Center are half of the shared
    file), so plain accuracy hides the rare ones; a class-balanced set does not.
    """
    n = len(classes)
    cm = confusion(y, pred, n)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), np.nan)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = cm.sum(1) > 0
    accepted = int((pred >= 0).sum())
    return {
        "n": int(len(y)), "accepted": accepted,
        "accuracy": float(tp.sum() / accepted) if accepted else None,
        "balanced_accuracy": float(np.nanmean(recall[present])) if accepted else None,
        "macro_f1": float(np.nanmean(np.where(present, f1, np.nan))) if present.any() else None,
        "per_class": {c: {"precision": _f(precision[i]), "recall": _f(recall[i]), "f1": _f(f1[i]),
                          "support": int(cm[i].sum())} for i, c in enumerate(classes)},
        "confusion": cm.tolist(),
    }


def _f(v) -> float | None:
    return None if np.isnan(v) else float(v)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature that minimizes the validation NLL (grid search: robust, no optimizer)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 200))
    nll = [-np.log(softmax(logits, t)[np.arange(len(y)), y] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def coverage_curve(probs: np.ndarray, y: np.ndarray, points: int = 21) -> list[dict]:
    """Accuracy on the accepted maps against the share accepted, for thresholds on max-prob."""
    conf, pred = probs.max(1), probs.argmax(1)
    out = []
    for q in np.linspace(0, 1, points):
        thr = float(np.quantile(conf, q)) if q > 0 else 0.0
        keep = conf >= thr
        out.append({"threshold": thr, "coverage": float(keep.mean()),
                    "accuracy": float((pred[keep] == y[keep]).mean()) if keep.any() else None})
    return out


def calibrate_reject(logits_val: np.ndarray, y_val: np.ndarray, target_accuracy: float,
                     x_val=None) -> dict:
    """Temperature plus the lowest max-prob threshold whose accepted validation
    maps reach ``target_accuracy`` (so coverage is as high as it can be).

    The out-of-distribution limits come from the validation maps too: the
    lowest logit energy (``min_energy``) and, with the inputs ``x_val``, the
    input-feature limits (``input``), each at the ``OOD_QUANTILE`` tail of the
    validation maps, so they turn away about that share of real maps."""
    t = fit_temperature(logits_val, y_val)
    probs = softmax(logits_val, t)
    conf, correct = probs.max(1), probs.argmax(1) == y_val
    order = np.argsort(-conf)
    acc_at_k = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(acc_at_k >= target_accuracy)[0]
    k = int(ok.max()) if ok.size else 0
    out = {"temperature": t, "threshold": float(conf[order][k]), "target_accuracy": target_accuracy,
           "val_coverage": (k + 1) / len(order), "val_accuracy": float(acc_at_k[k]),
           "min_energy": float(np.quantile(energy(logits_val), OOD_QUANTILE))}
    if x_val is not None:
        f = input_features(x_val)
        # Die codes only in real maps: allow a little slack for other readers' images.
        out["input"] = {"max_off_code": max(float(np.quantile(f["off_code"], 1 - OOD_QUANTILE)), 0.01),
                        "min_die": float(np.quantile(f["die"], OOD_QUANTILE)) * 0.9,
                        "max_outside": float(np.quantile(f["outside"], 1 - OOD_QUANTILE)) + 0.01,
                        "max_periodic": float(np.quantile(f["periodic"], 1 - OOD_QUANTILE)) * 1.1}
    return out


def apply_reject(logits: np.ndarray, reject: dict, inputs=None) -> np.ndarray:
    """Class indices, ``REVIEW`` (-1) where ``reject_reasons`` gives a reason."""
    pred = np.asarray(logits).argmax(1)
    why = reject_reasons(logits, reject, inputs)
    pred[np.array([r is not None for r in why], dtype=bool)] = REVIEW
    return pred


def plot_confusion(cm: np.ndarray, classes, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(classes), 1.0 + 0.65 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_coverage(curve: list[dict], path: Path, title: str) -> None:
    """Accuracy on accepted maps against coverage (the reject option's trade-off)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(c["coverage"], c["accuracy"]) for c in curve if c["accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", ms=3)
    ax.set_xlabel("coverage (share accepted)")
    ax.set_ylabel("accuracy on accepted (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_multilabel_report(folder: Path, name: str, labels, results: dict) -> Path:
    """``report.json`` and ``report.html`` for multi-label results (``quant.datasets.multilabel.report``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(results, indent=1))
    rows, pl_rows = [], ""
    for key, res in results.items():
        if isinstance(res, dict) and "exact_match" in res:
            rows.append(f"<tr><td>{html.escape(key)}</td><td>{_pct(res['exact_match'])}</td>"
                        f"<td>{res['hamming_loss']:.4f}</td><td>{res['micro_f1']:.3f}</td>"
                        f"<td>{res['macro_f1']:.3f}</td></tr>")
    for lab, v in results.get("qat", {}).get("per_label", {}).items():
        pl_rows += (f"<tr><td>{html.escape(lab)}</td><td>{_pct(v['precision'])}</td><td>{_pct(v['recall'])}</td>"
                    f"<td>{v['f1']:.3f}</td><td>{v['support']}</td></tr>")
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}</style>
<h1>{html.escape(name)}</h1><p>labels: {html.escape(", ".join(labels))}; a label is predicted when its logit &gt; 0</p>
<h2>Summary</h2><table><tr><th>model</th><th>exact match</th><th>hamming loss</th><th>micro-F1</th>
<th>macro-F1</th></tr>{''.join(rows)}</table>
<h2>Per label (QAT model)</h2><table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th>
<th>support</th></tr>{pl_rows}</table>"""
    path = folder / "report.html"
    path.write_text(page)
    return path


def write_report(folder: Path, name: str, classes, results: dict, figures: list[str],
                 extra_html: str = "") -> Path:
    """``report.json`` plus a self-contained ``report.html`` around the PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(results, indent=1))
    rows = []
    for key, res in results.items():
        if isinstance(res, dict) and "accuracy" in res:
            acc = "-" if res["accuracy"] is None else f"{100 * res['accuracy']:.2f}%"
            f1 = "-" if res.get("macro_f1") is None else f"{res['macro_f1']:.3f}"
            bal = _pct(res.get("balanced_accuracy"))
            rows.append(f"<tr><td>{html.escape(key)}</td><td>{acc}</td><td>{bal}</td><td>{f1}</td>"
                        f"<td>{res.get('accepted', res.get('n'))}/{res.get('n')}</td></tr>")
    per_class = results.get("qat", {}).get("per_class", {})
    pc_rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{_pct(v['precision'])}</td><td>{_pct(v['recall'])}</td>"
        f"<td>{v['support']}</td></tr>" for c, v in per_class.items())
    imgs = "".join(f'<figure><img src="{html.escape(f)}"><figcaption>{html.escape(f)}</figcaption></figure>'
                   for f in figures)
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}figure{{display:inline-block}}</style>
<h1>{html.escape(name)}</h1><p>classes: {html.escape(", ".join(classes))}</p>
<h2>Accuracy</h2><table><tr><th>model</th><th>accuracy</th><th>balanced accuracy</th><th>macro-F1</th><th>accepted</th></tr>
{''.join(rows)}</table>
<h2>Per class (QAT model)</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>support</th></tr>
{pc_rows}</table>{extra_html}<h2>Figures</h2>{imgs}"""
    path = folder / "report.html"
    path.write_text(page)
    return path


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"
