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
    for b in (0, bins - 1):
        parts.append(f'<text x="{left + (b + 0.5) * bw:.1f}" y="{H - bottom + 14}" font-size="10" '
                     f'text-anchor="middle">{E(_ts(edges[b]))}</text>')
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


def errors_html(rows) -> str:
    errs = Counter((r["error_name"] or "?", (r["error_message"] or "")[:160])
                   for r in rows if r["status"] != "ok")
    if not errs:
        return "<p>No error records.</p>"
    out = ["<table><tr><th>count</th><th>error</th><th>message</th></tr>"]
    out += [f"<tr><td>{n}</td><td>{E(name)}</td><td>{E(msg)}</td></tr>"
            for (name, msg), n in errs.most_common(20)]
    return "".join(out) + "</table>"


def render(rows, counters: dict, bins: int = 12, title: str = "waferq results") -> str:
    when = [r["finished_at"] for r in rows if r["finished_at"]]
    span = f"{_ts(min(when))} to {_ts(max(when))}" if when else "no results"
    counts = "".join(f"<li>{E(k)}: {v}</li>" for k, v in counters.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{E(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} .cm td{{min-width:3em}}</style></head>
<body><h1>{E(title)}</h1><p>Generated {E(_ts(time.time()))}; results {E(span)}.</p>
<ul>{counts}</ul>
<h2>Class mix over time</h2>{class_mix_svg(rows, bins)}
<h2>Confusion matrix</h2>{confusion_html(rows)}
<h2>Latency per board</h2>{latency_html(rows)}
<h2>Errors</h2>{errors_html(rows)}
</body></html>
"""
