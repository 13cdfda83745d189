"""Summary, console table and JSON output of a classify run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def percentiles(values, ps=(50, 99)) -> dict:
    if not values:
        return {f"p{p}": None for p in ps}
    arr = np.asarray(values, dtype=float)
    return {f"p{p}": float(np.percentile(arr, p)) for p in ps}


def summarize(records: list[dict], classes, batch_latencies_s, batch_sizes, wall_s: float,
              weights_sent: bool, board: dict | None) -> dict:
    n_classes = len(classes)
    ok = [r for r in records if r["status"] == "ok"]
    labelled = [r for r in ok if r.get("label") is not None]
    per_class = []
    for k, name in enumerate(classes):
        pred = sum(r["class_index"] == k for r in ok)
        row = dict(cls=name, predicted=pred)
        if labelled:
            tp = sum(r["class_index"] == k and r["label"] == k for r in labelled)
            actual = sum(r["label"] == k for r in labelled)
            pred_l = sum(r["class_index"] == k for r in labelled)
            row.update(actual=actual, precision=tp / pred_l if pred_l else None,
                       recall=tp / actual if actual else None)
        per_class.append(row)
    per_image = [t / n for t, n in zip(batch_latencies_s, batch_sizes) if n]
    infer_s = float(sum(batch_latencies_s))
    summary = dict(
        n_images=len(records), n_ok=len(ok), n_errors=len(records) - len(ok),
        n_classes=n_classes, weights_sent=weights_sent,
        n_rejected=sum(bool(r.get("rejected")) for r in ok),
        n_warnings=sum(bool(r.get("warnings")) for r in records),
        accuracy=(sum(r["class_index"] == r["label"] for r in labelled) / len(labelled)
                  if labelled else None),
        n_labelled=len(labelled),
        throughput_maps_per_s=(len(ok) / infer_s if infer_s > 0 else None),
        wall_s=wall_s, n_batches=len(batch_latencies_s),
        batch_latency_s=percentiles(batch_latencies_s),
        image_latency_s=percentiles(per_image),
        per_class=per_class,
    )
    if board:
        summary["board"] = {k: board[k] for k in ("backend", "topology_hash", "weights_checksum",
                                                   "core_version", "weight_loads") if k in board}
    return summary


def _fmt(v, pct=False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:5.1f}%" if pct else str(v)


def format_table(summary: dict) -> str:
    labelled = summary["n_labelled"] > 0
    width = max([len("class")] + [len(r["cls"]) for r in summary["per_class"]])
    head = f"{'class':<{width}}  {'predicted':>9}"
    if labelled:
        head += f"  {'actual':>6}  {'precision':>9}  {'recall':>6}"
    lines = [head, "-" * len(head)]
    for r in summary["per_class"]:
        line = f"{r['cls']:<{width}}  {r['predicted']:>9}"
        if labelled:
            line += (f"  {r['actual']:>6}  {_fmt(r['precision'], True):>9}"
                     f"  {_fmt(r['recall'], True):>6}")
        lines.append(line)
    lines.append("")
    sent = summary["weights_sent"]
    sent = ("- (no board reached)" if sent is None else "yes" if sent else "no (already loaded)")
    lines.append(f"images: {summary['n_images']}  ok: {summary['n_ok']}  errors: {summary['n_errors']}"
                 f"  weights sent: {sent}")
    if summary.get("n_rejected"):
        lines.append(f"rejected by the reject rule (review): {summary['n_rejected']}")
    if summary.get("n_warnings"):
        lines.append(f"maps with warnings (see stderr, the CSV and the store): {summary['n_warnings']}")
    if summary.get("n_from_store"):
        lines.append(f"answered earlier (from the store, not sent again): {summary['n_from_store']}")
    if summary["accuracy"] is not None:
        lines.append(f"accuracy: {100 * summary['accuracy']:.2f}% on {summary['n_labelled']} labelled maps")
    tp = summary["throughput_maps_per_s"]
    if tp is not None:
        b, i = summary["batch_latency_s"], summary["image_latency_s"]
        lines.append(f"throughput: {tp:.1f} maps/s over {summary['n_batches']} batches")
        lines.append(f"latency per batch: p50 {1e3 * b['p50']:.2f} ms  p99 {1e3 * b['p99']:.2f} ms")
        lines.append(f"latency per image: p50 {1e3 * i['p50']:.3f} ms  p99 {1e3 * i['p99']:.3f} ms")
    return "\n".join(lines)


def write_json(path, records: list[dict], summary: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"summary": summary, "results": records}, indent=1))
    tmp.replace(path)


CSV_COLUMNS = ("id", "seq", "source", "index", "lot_id", "wafer_id", "tester", "part", "status",
               "class_index", "cls", "confidence", "rejected", "reject_reason", "label", "label_name", "error_name",
               "error_message", "warnings", "board", "cached", "file_sha256")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v) -> str:
    """One CSV cell. Text that a spreadsheet would run as a formula (=, +, -, @)
    gets a leading ' (OWASP's advice): a label like '=HYPERLINK(...)' comes from a file."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, list):
        v = "; ".join(map(str, v))
    if isinstance(v, str) and v.startswith(_FORMULA):
        return "'" + v
    return v


def write_csv(path, records: list[dict]) -> None:
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class" if c == "cls" else c for c in CSV_COLUMNS])
        for r in records:
            err = r.get("error") or {}
            row = dict(r, error_name=err.get("name"), error_message=err.get("message"))
            w.writerow([csv_cell(row.get(c)) for c in CSV_COLUMNS])
    tmp.replace(path)


def check_writable(path, what: str) -> None:
    """Before any map is sent: an output that cannot be written would lose the
    run's report. Creates the folders and a probe file, as the write will."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    probe = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "a"):
            pass
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be written: {e.strerror or e}") from None
