"""What bench.accuracy_vs_bits reports: the per-seed table, mean and spread
over seeds, the accuracy-against-bits and Pareto plots, and the merge of runs
made apart (one seed each)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np


def table(rows) -> str:
    head = f"{'family':12s} {'mode':8s} {'params':>8s} {'weight bits':>12s} {'accuracy':>9s} {'vs FP32':>8s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['family']:12s} {r['mode']:8s} {r['params']:8d} {r['weight_bits']:12d} "
                     f"{100 * r['accuracy']:8.2f}% {100 * r['delta_vs_fp32']:+7.2f}")
    return "\n".join(lines)


def _edged(row) -> bool:
    """A point whose first and last layers are wider (mode W2A2e8); rows
    written before --edge-bits have no edge_bits."""
    return bool(row.get("edge_bits"))


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for fam in dict.fromkeys(r["family"] for r in rows):
        qat = [r for r in rows if r["family"] == fam and r["mode"] not in ("ptq8", "fp32")]
        pts = sorted((r["bits"], 100 * r["accuracy"]) for r in qat if not _edged(r))
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=fam)
        edged = [r for r in qat if _edged(r)]
        if edged:
            ax.plot([r["bits"] for r in edged], [100 * r["accuracy"] for r in edged], "s", mfc="none",
                    color=line.get_color(), label=f"{fam}, wider edge weights")
        fp = [100 * r["accuracy"] for r in rows if r["family"] == fam and r["mode"] == "fp32"][0]
        ax.axhline(fp, color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("weight and activation bits (QAT); dotted: FP32")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(sorted({r["bits"] for r in rows if r["mode"] != "fp32"}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def aggregate(rows) -> list[dict]:
    """Mean and spread (sample std) over seeds per (family, mode)."""
    out = []
    for key in dict.fromkeys((r["family"], r["mode"]) for r in rows):
        rs = [r for r in rows if (r["family"], r["mode"]) == key]
        a = np.array([r["accuracy"] for r in rs])
        f = np.array([r.get("macro_f1", np.nan) for r in rs], dtype=float)
        agg = {k: rs[0][k] for k in ("family", "mode", "bits", "params", "weight_bits", "lut", "bram36", "dsp",
                                       "maps_per_s", "images_per_s", "views", "fits") if k in rs[0]}
        agg.update(seeds=len(rs), accuracy_mean=float(a.mean()), accuracy_std=float(a.std(ddof=1)) if len(a) > 1
                   else 0.0, macro_f1_mean=float(np.nanmean(f)))
        if all("accuracy_1view" in r for r in rs):
            agg["accuracy_1view_mean"] = float(np.mean([r["accuracy_1view"] for r in rs]))
        out.append(agg)
    return out


def pareto_table(agg) -> str:
    head = (f"{'family':12s} {'mode':8s} {'seeds':>5s} {'accuracy':>16s} {'macro-F1':>8s} {'LUT':>7s} "
            f"{'BRAM36':>7s} {'maps/s':>8s} {'fits':>5s}")
    lines = [head, "-" * len(head)]
    for r in agg:
        hw = (f"{r['lut']:7d} {r['bram36']:7.1f} {r['maps_per_s']:8.0f} {str(r['fits']):>5s}" if "lut" in r
              else f"{'-':>7s} {'-':>7s} {'-':>8s} {'-':>5s}")
        lines.append(f"{r['family']:12s} {r['mode']:8s} {r['seeds']:5d} {100 * r['accuracy_mean']:7.2f}% "
                     f"+- {100 * r['accuracy_std']:4.2f} {r['macro_f1_mean']:8.3f} {hw}")
    return "\n".join(lines)


def plot_pareto(agg, path: Path) -> None:
    """Accuracy (mean, spread as error bars) against the estimator's LUTs and
    against its maps/s: a point cheap in LUTs can be one folded to a crawl
    (the wide net at 8 bits is BRAM-bound), so both axes are drawn."""
    fig = pareto_figure(agg)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def pareto_figure(agg):
    """The figure plot_pareto saves (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, label in ((axes[0], "lut", "LUT (hls.estimate, XC7Z020 with platform)"),
                           (axes[1], "maps_per_s", "maps/s (hls.estimate at 100 MHz, log scale)")):
        for fam in dict.fromkeys(r["family"] for r in agg):
            pts = [r for r in agg if r["family"] == fam and r.get(key)]
            ax.errorbar([r[key] for r in pts], [100 * r["accuracy_mean"] for r in pts],
                        yerr=[100 * r["accuracy_std"] for r in pts], fmt="o", capsize=3, label=fam)
            for r in pts:
                ax.annotate(r["mode"], (r[key], 100 * r["accuracy_mean"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_xscale("log")
    # A span under two decades gets a label on every minor tick, and they
    # overprint near each decade; plain numbers at the decades and at 2 and 5
    # times them, or at every tick when the span is under one decade (there
    # 1-2-5 can leave a single number, and a log axis needs two to be read).
    from matplotlib.ticker import FuncFormatter

    def _tick(v, _pos):
        lo, hi = axes[1].get_xlim()
        lead = f"{v:.0e}"[0]
        return f"{v:g}" if lead in "125" or hi < 10 * lo else ""

    plain = FuncFormatter(_tick)
    axes[1].xaxis.set_major_formatter(plain)
    axes[1].xaxis.set_minor_formatter(plain)
    axes[0].set_ylabel("accuracy on held-out maps (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def merge(dirs, out: Path) -> int:
    """Rows of several runs (seeds run in separate processes or on separate
    machines) as one sweep: aggregate, table and plots again. A (family,
    mode, seed) point that two runs both hold is refused, not counted twice."""
    rows, sources = [], []
    for d in dirs:
        path = Path(d) / "accuracy_vs_bits.json" if Path(d).is_dir() else Path(d)
        if not path.exists():
            raise SystemExit(f"{path}: no accuracy_vs_bits.json to merge")
        res = json.loads(path.read_text())
        rows += res["rows"]
        sources.append({"path": str(path), "data": res.get("data"), "config": res.get("config"),
                        "recipe": res.get("recipe"), "seeds": res.get("seeds")})
    dup = sorted(k for k, n in Counter((r["family"], r["mode"], r["seed"]) for r in rows).items() if n > 1)
    if dup:
        raise SystemExit(f"the runs overlap: {dup[0]} (family, mode, seed) appears twice")
    if len({s["data"] for s in sources}) > 1:
        raise SystemExit(f"the runs used different data: {sorted({str(s['data']) for s in sources})}")
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(rows)
    (out / "accuracy_vs_bits.json").write_text(json.dumps(
        {"merged_from": sources, "data": sources[0]["data"], "seeds": sorted({r["seed"] for r in rows}),
         "rows": rows, "aggregate": agg}, indent=1))
    print(pareto_table(agg))
    plot_pareto(agg, out / "pareto.png")
    print(f"wrote {out / 'accuracy_vs_bits.json'} and pareto.png")
    return 0
