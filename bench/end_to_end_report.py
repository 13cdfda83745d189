"""The figures of ``bench.end_to_end``: a row from its repeats, the bytes a
map on GbE and DMA, the board CPUs' budget, and the printed table.

CPU seconds come in from each process's own accounting (see
``bench.end_to_end.COUNTED``); rows hold medians over the repeats with [min,
max] as the spread, never a single timing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.end_to_end_roles import wafer_images
from protocol import batch as WB
from protocol import pixels as PX
from protocol import results as R
from protocol import stream as S
from protocol import wire as W

GOAL_US = 5.0     # service + host CPU per map here at batch 256 (issue 20)
GOAL_PATH = "tcp+chardev/cached"
TARGET_MAPS_S = 10_000
# How much slower the board CPUs run this code than this machine (an estimate
# until the bench's ``service alone`` row runs on a board; it needs only numpy).
# Clock: Zybo Z7-20 PS7 Cortex-A9 667 MHz, STM32MP157 Cortex-A7 650 MHz.
# Per clock: Arm's published Dhrystone figures are 2.5 DMIPS/MHz (Cortex-A9)
# and 1.9 DMIPS/MHz (Cortex-A7); a current out-of-order x86 server core does
# about 4x the A9's work per clock on branchy interpreter code (CoreMark/MHz
# tables, e.g. WikiChip's "CoreMark/MHz" page, put dual-issue Arm cores near 3
# and x86 cores near 6, and CoreMark favours in-order cores). Hence factor =
# (this clock / board clock) * per-clock ratio, A7 scaled by 2.5 / 1.9.
BOARD_FACTORS = {
    "zybo_a9_667": dict(cpu="Cortex-A9 @ 667 MHz (Zybo Z7-20 board service)", per_clock=4.0,
                        mhz=667, dmips_per_mhz=2.5),
    "stm32mp1_a7_650": dict(cpu="Cortex-A7 @ 650 MHz (STM32MP157 host)", per_clock=4.0 * 2.5 / 1.9,
                            mhz=650, dmips_per_mhz=1.9),
}
SOURCES = ["Arm Cortex-A9 and Cortex-A7 product pages: 2.5 and 1.9 DMIPS/MHz",
           "WikiChip, CoreMark/MHz (en.wikichip.org/wiki/coremark-mhz)",
           "Zybo Z7-20 reference manual: Cortex-A9 at 667 MHz; ST STM32MP157 datasheet: "
           "Cortex-A7 at 650 MHz (800 MHz on the C/F parts)"]



def host_mhz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    except OSError:
        pass
    return 2300.0


def bytes_per_map(model_dir: Path, batch: int) -> dict:
    """GbE (wire frames) and DMA (stream messages) bytes a map, both directions."""
    from contract import export_dir

    ex = export_dir.read(model_dir)
    spec = ex.spec()
    shape, k = (spec.in_size, spec.in_size, spec.in_channels), spec.n_classes
    x = wafer_images(batch, shape)
    states = PX.die_codes_from_pixels(x)
    wire_u8 = W.HEADER_SIZE + len(WB.encode_batch(x, np.arange(batch)))
    wire_die2 = W.HEADER_SIZE + len(WB.encode_batch(states, np.arange(batch), S.PACK_DIE2))
    rec = [dict(id=i, status=W.OK, class_index=0, logits=np.zeros(k, np.int32)) for i in range(batch)]
    wire_rep = W.HEADER_SIZE + len(R.encode(rec, 0))
    out = dict(gbe_request_u8=wire_u8 / batch, gbe_request_die2=wire_die2 / batch,
               gbe_reply=wire_rep / batch)
    for name, packing, imgs in (("u8", S.PACK_U8, x), ("die2", S.PACK_DIE2, states)):
        out[f"dma_request_{name}"] = 4 * PX.encode_infer_batch(imgs, packing, 0).size / batch
    out["dma_reply"] = 4 * (S.HEADER_WORDS + S.TRAILER_WORDS + batch * S.record_words(k, 0)) / batch
    return {key: round(v, 1) for key, v in out.items()}


def _us(r: dict, maps: int) -> float:
    return 1e6 * (r["user_s"] + r["sys_s"]) / maps


def _stat(values) -> tuple[float, list]:
    """(median, [min, max]) of the repeats, rounded."""
    v = np.asarray(values, dtype=float)
    return round(float(np.median(v)), 2), [round(float(v.min()), 2), round(float(v.max()), 2)]


def row(path, batch, maps, hosts, services, idle_us_s=None, engine_s=None) -> dict:
    """One path and batch size from its repeats: ``hosts`` and ``services``
    are one (wall_s, user_s, sys_s) dict a repeat (``hosts`` None for the
    service alone); medians, with [min, max] over the repeats as the spread."""
    walls = [r["wall_s"] for r in (hosts or services)]
    row = dict(path=path, batch=batch, maps=maps, repeats=len(services),
               timed_batches=len(services) * -(-maps // batch),
               maps_per_s=round(maps / float(np.median(walls)), 1) if min(walls) > 0 else None)
    svc = [_us(r, maps) for r in services]
    row["service_us_per_map"], row["service_us_spread"] = _stat(svc)
    if idle_us_s is not None:
        # the service's idle cost (its accept loop's wake-ups) over this
        # repeat's wall time, which a slow simulated core stretches
        less = [max(0.0, u - idle_us_s * w / maps) for u, w in zip(svc, walls)]
        row["service_idle_us_per_s"] = round(idle_us_s, 1)
        row["service_us_per_map_less_idle"], row["service_less_idle_spread"] = _stat(less)
    if hosts is None:
        row["host_us_per_map"] = row["host_us_spread"] = None
        tot = svc
    else:
        host = [_us(r, maps) for r in hosts]
        row["host_us_per_map"], row["host_us_spread"] = _stat(host)
        tot = [h + s for h, s in zip(host, svc)]
        if idle_us_s is not None:
            row["total_us_per_map_less_idle"], row["total_less_idle_spread"] = _stat(
                [h + s for h, s in zip(host, less)])
    row["total_us_per_map"], row["total_us_spread"] = _stat(tot)
    row["goal_ratio"] = round(row["total_us_per_map"] / GOAL_US, 2)
    if engine_s is not None:
        row["host_engine_us_per_map"] = round(1e6 * engine_s / maps, 2)
    return row


def budget(rows, mhz: float) -> dict:
    """The CPU per map at the largest batch, scaled to each board CPU."""
    out = {}
    for key, f in BOARD_FACTORS.items():
        factor = (mhz / f["mhz"]) * f["per_clock"]
        out[key] = dict(f, factor=round(factor, 1))
    big = [r for r in rows if r["batch"] == max(r2["batch"] for r2 in rows)]
    for r in big:
        # the service's own work: less its idle share where a slow core stretched the row
        svc = r.get("service_us_per_map_less_idle", r["service_us_per_map"])
        a9 = svc * out["zybo_a9_667"]["factor"]
        a7 = (r["host_us_per_map"] or 0.0) * out["stm32mp1_a7_650"]["factor"]
        r["board_us_per_map"] = dict(service_a9=round(a9, 1), host_a7=round(a7, 1))
        # the two CPUs work in parallel: the slower one bounds the rate
        r["board_maps_per_s_cpu_bound"] = round(1e6 / max(a9, a7, 1e-9))
    return out


def progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        class _Null:
            def update(self, n): pass
            def close(self): pass
        return _Null()
    return tqdm(total=total, unit="row", file=sys.stderr, desc="end_to_end")


def print_table(rows) -> None:
    """Medians over the repeats; "spread" is [min, max] of host + service."""
    print(f"{'path':22s} {'batch':>5s} {'maps':>9s} {'maps/s':>9s} {'host us':>8s} "
          f"{'svc us':>8s} {'svc-idle':>8s} {'sum us':>8s} {'spread':>13s} {'x goal':>6s} "
          f"{'engine us':>9s}")
    for r in rows:
        def f(v, w=8):
            return f"{v:{w}.1f}" if v is not None else f"{'-':>{w}s}"
        lo, hi = r["total_us_spread"]
        print(f"{r['path']:22s} {r['batch']:5d} {r['maps']:>5d}x{r['repeats']:<3d} "
              f"{f(r['maps_per_s'], 9)} {f(r['host_us_per_map'])} {f(r['service_us_per_map'])} "
              f"{f(r.get('service_us_per_map_less_idle'))} {f(r['total_us_per_map'])} "
              f"{f'{lo:.1f}..{hi:.1f}':>13s} {r['goal_ratio']:6.2f} "
              f"{f(r.get('host_engine_us_per_map'), 9)}")
