"""The folding of a model (``hls.parallel``: pe and simd per layer) that
``make hls`` uses unless parallel.json says otherwise.

The core is one DATAFLOW region, so its speed is its slowest stage:
``default_parallelism`` widens that stage, a divisor step of pe or simd at a
time (the step that saves more of its cycles per LUT spent, by
``hls.estimate``), while the whole design stays inside a budget, until a
target speed or until the slowest stage cannot be widened.
"""
from __future__ import annotations

from pathlib import Path

from hls import parallel
from hls.estimate import clock_hz, estimate, fits

DEFAULT_BUDGET = {"bram18": 0.6, "dsp": 0.8, "lut": 0.7, "ff": 0.7}
# What make hls folds toward by default: issue 16's goal for the wafer-map CNN
# (a map every 100 us at 100 MHz); a model that cannot reach it gets the
# fastest balanced folding that fits DEFAULT_BUDGET.
DEFAULT_TARGET_MAPS_PER_S = 10_000


def _next_divisor(n: int, cur: int) -> int | None:
    return next((d for d in range(cur + 1, n + 1) if n % d == 0), None)


def default_parallelism(layers: list[dict], target_maps_per_s: float | None = None,
                        budget: dict | None = None, f_clk: int | None = None) -> dict:
    """Balanced folding for the DATAFLOW core: the interval between images is
    the slowest stage, so widen that one, a divisor step of pe or simd at a
    time (the step that saves more of its cycles per LUT spent), while the
    whole design stays inside ``budget`` (fractions of the device), until the
    modelled speed reaches ``target_maps_per_s`` (None: as fast as fits) or
    the slowest stage cannot be widened any more."""
    budget = budget or DEFAULT_BUDGET
    f_clk = f_clk or clock_hz()
    par = {l["name"]: {"pe": 1, "simd": 1} for l in layers}
    est = estimate(layers, par, f_clk)
    by_name = {l["name"]: l for l in layers}
    while target_maps_per_s is None or est["maps_per_s"] < target_maps_per_s:
        l = by_name.get(est["slowest_stage"])
        if l is None:   # the source, the sink or a dup2 stage: no folding widens it
            break
        p, row = par[l["name"]], next(r for r in est["layers"] if r["name"] == l["name"])
        trials = []
        for key, n in (("simd", parallel.fan_in(l)), ("pe", parallel.out_channels(l))):
            if key == "simd" and l["type"] not in ("conv2d", "dense"):
                continue
            d = _next_divisor(n, p[key])
            if d is None:
                continue
            t = {**par, l["name"]: {**p, key: d}}
            try:
                e = estimate(layers, t, f_clk)
            except ValueError:  # a folding parallel.check refuses (ap_int width)
                continue
            if not fits(e, budget):
                continue
            new = next(r for r in e["layers"] if r["name"] == l["name"])
            saved = row["cycles"] - new["cycles"]
            if saved > 0:
                trials.append((saved / max(e["total"]["lut"] - est["total"]["lut"], 1), t, e))
        if not trials:
            break
        _, par, est = max(trials, key=lambda x: x[0])
    return par


def ensure_parallel(layers: list[dict], path: str | Path) -> dict[str, dict]:
    """The folding in ``path``; writes ``default_parallelism`` there first if it
    does not exist, so that the generated core and the estimate use the same."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        parallel.save(path, default_parallelism(layers, DEFAULT_TARGET_MAPS_PER_S))
    return parallel.load(layers, path)
