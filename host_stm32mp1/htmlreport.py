"""Self-contained HTML report with inline SVG charts (no matplotlib: the
host must run without it, and a single file is easy to mail from the line)."""
from __future__ import annotations

import html
import time
from collections import Counter, defaultdict

import numpy as np

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
E = html.escape


def _ts(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _class_names(rows) -> dict[int, str]:
    names = {}
    for r in rows:
        if r["status"] == "ok" and r["class_index"] is not None:
            names[int(r["class_index"])] = r["class_name"] or f"class {r['class_index']}"
    return names


def class_mix_svg(rows, bins: int) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return "<p>No classified maps yet.</p>"
    names = _class_names(ok)
    keys = sorted(names)
    t = np.array([r["finished_at"] for r in ok], dtype=float)
    t0, t1 = float(t.min()), float(t.max())
    edges = np.linspace(t0, t1 if t1 > t0 else t0 + 1, bins + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    counts = np.zeros((bins, len(keys)), int)
    col = {k: i for i, k in enumerate(keys)}
    for b, r in zip(which, ok):
        counts[b, col[int(r["class_index"])]] += 1
    W, H, left, bottom, top = 760, 260, 50, 40, 10
    bw = (W - left - 10) / bins
    peak = max(1, counts.sum(1).max())
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 24 * ((len(keys) + 3) // 4)}" '
             f'role="img" aria-label="class mix over time">']
    parts.append(f'<line x1="{left}" y1="{H - bottom}" x2="{W - 10}" y2="{H - bottom}" stroke="#333"/>')
    parts.append(f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11">{peak}</text>')
    for b in range(bins):
        y = H - bottom
        for i, k in enumerate(keys):
            n = counts[b, i]
            if not n:
                continue
            h = (H - bottom - top) * n / peak
            y -= h
            parts.append(f'<rect x="{left + b * bw + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
                         f'<title>{E(names[k])}: {n}</title></rect>')
    # Start and end of the time axis, anchored inwards so neither label is cut at the edge.
    for x, anchor, t in ((left, "start", edges[0]), (W - 10, "end", edges[-1])):
        parts.append(f'<text x="{x}" y="{H - bottom + 14}" font-size="10" '
                     f'text-anchor="{anchor}">{E(_ts(t))}</text>')
    for i, k in enumerate(keys):
        x, y = left + (i % 4) * 180, H + 4 + 24 * (i // 4)
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{x + 16}" y="{y + 11}" font-size="12">{E(names[k])} '
                     f'({int(counts[:, i].sum())})</text>')
    parts.append("</svg>")
    return "".join(parts)


def confusion_html(rows) -> str:
    lab = [r for r in rows if r["status"] == "ok" and r["label"] is not None]
    if not lab:
        return "<p>No labelled maps: no confusion matrix.</p>"
    names = _class_names(rows)
    keys = sorted(set(names) | {int(r["label"]) for r in lab})
    m = Counter((int(r["label"]), int(r["class_index"])) for r in lab)
    peak = max(m.values())
    acc = sum(v for (a, p), v in m.items() if a == p) / len(lab)
    out = [f"<p>{len(lab)} labelled maps, accuracy {100 * acc:.2f}%. Rows: actual; columns: predicted.</p>",
           "<table class='cm'><tr><th></th>"]
    out += [f"<th>{E(names.get(k, f'class {k}'))}</th>" for k in keys]
    out.append("</tr>")
    for a in keys:
        out.append(f"<tr><th>{E(names.get(a, f'class {a}'))}</th>")
        for p in keys:
            n = m.get((a, p), 0)
            alpha = 0.85 * n / peak if n else 0
            color = "89,161,79" if a == p else "225,87,89"
            out.append(f"<td style='background:rgba({color},{alpha:.2f})'>{n or ''}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def latency_html(rows) -> str:
    per = defaultdict(list)
    for r in rows:
        if r["latency_s"] is not None:
            per[r["board"] or "(unknown)"].append(float(r["latency_s"]))
    if not per:
        return "<p>No latencies recorded.</p>"
    stats = {b: (len(v), *np.percentile(v, [50, 99])) for b, v in sorted(per.items())}
    peak = max(s[2] for s in stats.values()) or 1.0
    W, row_h, left = 760, 26, 200
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{row_h * len(stats) + 10}" '
           'role="img" aria-label="latency per board">']
    table = ["<table><tr><th>board</th><th>maps</th><th>p50 ms/map</th><th>p99 ms/map</th></tr>"]
    for i, (b, (n, p50, p99)) in enumerate(stats.items()):
        y = 5 + i * row_h
        for val, color, hgt in ((p99, "#f28e2b", 18), (p50, "#4e79a7", 10)):
            w = (W - left - 20) * val / peak
            svg.append(f'<rect x="{left}" y="{y + (18 - hgt) / 2}" width="{w:.1f}" height="{hgt}" fill="{color}"/>')
        svg.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" font-size="12">{E(b)}</text>')
        table.append(f"<tr><td>{E(b)}</td><td>{n}</td><td>{1e3 * p50:.3f}</td><td>{1e3 * p99:.3f}</td></tr>")
    svg.append("</svg>")
    table.append("</table>")
    return "".join(svg) + "<p>Blue: p50, orange: p99 (per map, batch time / batch size).</p>" + "".join(table)


def _where(r) -> str:
    return r["source"] if r["idx"] is None or r["idx"] < 0 else f"{r['source']} [{r['idx']}]"


def _mix(rows) -> str:
    mix = Counter(r["class_name"] or f"class {r['class_index']}" for r in rows if r["status"] == "ok")
    return ", ".join(f"{E(k)} {v}" for k, v in mix.most_common()) or "-"


def _conf(v) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def files_html(rows) -> str:
    """One line a file: its maps, what became of them, and its lots."""
    per = defaultdict(list)
    for r in rows:
        per[(r["source"], r["file_sha256"])].append(r)
    if not per:
        return "<p>No files yet.</p>"
    out = ["<table><tr><th>file</th><th>lot</th><th>maps</th><th>ok</th><th>errors</th>"
           "<th>review</th><th>warnings</th><th>class mix</th><th>last result</th></tr>"]
    for (src, _sha), rs in sorted(per.items(), key=lambda kv: -max(r["finished_at"] or 0 for r in kv[1])):
        lots = sorted({r["lot_id"] for r in rs if r["lot_id"]})
        out.append(f"<tr><td class='l'>{E(src)}</td><td class='l'>{E(', '.join(lots) or '-')}</td>"
                   f"<td>{len(rs)}</td><td>{sum(r['status'] == 'ok' for r in rs)}</td>"
                   f"<td>{sum(r['status'] != 'ok' for r in rs)}</td>"
                   f"<td>{sum(bool(r['rejected']) for r in rs)}</td>"
                   f"<td>{sum(bool(r['warnings']) for r in rs)}</td>"
                   f"<td class='l'>{_mix(rs)}</td><td>{E(_ts(max(r['finished_at'] or 0 for r in rs)))}</td></tr>")
    return "".join(out) + "</table>"


def wafers_html(rows, limit: int = 500) -> str:
    """One line a map (wafer): identity, result, confidence; the newest first."""
    if not rows:
        return "<p>No wafers yet.</p>"
    out = ["<table><tr><th>lot</th><th>wafer</th><th>tester</th><th>part</th><th>file</th>"
           "<th>result</th><th>confidence</th><th>label</th><th>notes</th><th>finished</th></tr>"]
    newest = sorted(rows, key=lambda r: (-(r["finished_at"] or 0), -r["seq"]))
    for r in newest[:limit]:
        if r["status"] == "ok":
            result = E(r["class_name"] or f"class {r['class_index']}")
            if r["rejected"]:
                result += " <b>(review: below the confidence threshold)</b>"
        else:
            result = f"<span class='err'>error {E(r['error_name'] or '?')}</span>"
        notes = r["error_message"] if r["status"] != "ok" else "; ".join(_warnings(r))
        out.append("<tr>" + "".join(f"<td class='l'>{E(str(v)) if v is not None else '-'}</td>"
                                    for v in (r["lot_id"], r["wafer_id"], r["tester"], r["part"],
                                              _where(r)))
                   + f"<td class='l'>{result}</td><td>{_conf(r['confidence'])}</td>"
                   f"<td>{'-' if r['label'] is None else int(r['label'])}</td>"
                   f"<td class='l'>{E(notes or '')}</td><td>{E(_ts(r['finished_at']))}</td></tr>")
    more = f"<p>{len(rows) - limit} older results are in the store.</p>" if len(rows) > limit else ""
    return "".join(out) + "</table>" + more


def _warnings(r) -> list:
    import json

    try:
        return json.loads(r["warnings"]) if r["warnings"] else []
    except ValueError:
        return [str(r["warnings"])]


def errors_html(rows) -> str:
    errs = defaultdict(list)
    for r in rows:
        if r["status"] != "ok":
            errs[(r["error_name"] or "?", (r["error_message"] or "")[:200])].append(_where(r))
    if not errs:
        return "<p>No error records.</p>"
    out = ["<table><tr><th>count</th><th>error</th><th>message</th><th>files</th></tr>"]
    for (name, msg), where in sorted(errs.items(), key=lambda kv: -len(kv[1]))[:50]:
        shown = ", ".join(where[:10]) + (f" and {len(where) - 10} more" if len(where) > 10 else "")
        out.append(f"<tr><td>{len(where)}</td><td>{E(name)}</td><td class='l'>{E(msg)}</td>"
                   f"<td class='l'>{E(shown)}</td></tr>")
    return "".join(out) + "</table>"


COUNTER_LABELS = {"images": "maps in the store", "results_ok": "classified",
                  "results_error": "error records", "pending": "sent or journaled, no answer yet",
                  "files": "files handled by watch"}


def render(rows, counters: dict, bins: int = 12, title: str = "waferq results") -> str:
    when = [r["finished_at"] for r in rows if r["finished_at"]]
    span = f"{_ts(min(when))} to {_ts(max(when))}" if when else "no results"
    shown = dict(counters)
    shown["files"] = len({(r["source"], r["file_sha256"]) for r in rows})
    labels = dict(COUNTER_LABELS, files="files")
    if counters.get("files"):
        shown["watch_files"] = counters["files"]
        labels["watch_files"] = COUNTER_LABELS["files"]
    shown["rejected"] = sum(bool(r["rejected"]) for r in rows)
    labels["rejected"] = "classified but marked for review by the reject rule"
    counts = "".join(f"<li>{E(labels.get(k, k))}: {v}</li>" for k, v in shown.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{E(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td.l{{text-align:left}} .cm td{{min-width:3em}}
.err{{color:#b22}}</style></head>
<body><h1>{E(title)}</h1><p>Generated {E(_ts(time.time()))}; results {E(span)}.</p>
<ul>{counts}</ul>
<h2>Files</h2>{files_html(rows)}
<h2>Wafers</h2>{wafers_html(rows)}
<h2>Class mix over time</h2>{class_mix_svg(rows, bins)}
<h2>Confusion matrix</h2>{confusion_html(rows)}
<h2>Latency per board</h2>{latency_html(rows)}
<h2>Errors</h2>{errors_html(rows)}
</body></html>
"""
