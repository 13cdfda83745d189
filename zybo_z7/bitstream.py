"""make bitstream: Vitis HLS export of the core, then the Vivado block design and bitstream.

    python -m zybo_z7.bitstream --model build/wmcnn_4w4a/export [--out build/wmcnn_4w4a/bitstream]

Steps: board facts (zybo_z7/board.py) and the CSR include (zybo_z7/csr_map.py) into
``--out``; ``hls.synth`` (generate the C++, write run_hls.tcl, ``vitis_hls``: the HLS script exports the
core as an IP repository into ``build/<model>/hls/ip``; co-simulation only with
``--cosim``); then
``vivado -mode batch -source zybo_z7/vivado/build.tcl -tclargs <out>/board_facts.tcl``,
which writes ``waferq.bit``, ``waferq.hwh`` and ``waferq.xsa`` into ``--out``.

A missing tool or input ends the run with one sentence on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hls import synth
from zybo_z7 import board, csr_map

VIVADO_TCL = Path(__file__).resolve().parent / "vivado" / "build.tcl"


class BuildError(Exception):
    """A one-sentence reason the build cannot go on."""


def _need(tool: str, what: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BuildError(f"make bitstream: {tool} is not on PATH; {what}.")
    return path


def build(model_dir: Path, out_dir: Path, jobs: int, cosim: bool = False) -> Path:
    vivado = _need("vivado", "source the Vivado settings64.sh (AMD Vivado 2023.2 or later) first")
    if shutil.which("vitis_hls") is None and shutil.which("vitis-run") is None:
        raise BuildError("make bitstream: neither vitis_hls nor vitis-run is on PATH; "
                         "source the Vitis settings64.sh first.")
    if not (model_dir / "model.json").is_file():
        raise BuildError(f"make bitstream: no {model_dir}/model.json; run make export first.")
    hls_dir = model_dir.resolve().parent / "hls"

    facts, _ = board.write(out_dir, model_dir)
    csr_map.write(out_dir / "rtl_include")
    with open(facts, "a") as f:
        f.write(f"set wq_jobs {jobs}\n")

    try:
        synth.run(model_dir, hls_dir, cosim)   # C++, run_hls.tcl, vitis_hls, the IP in hls/ip
    except synth.SynthError as e:
        raise BuildError(str(e).replace("make hls", "make bitstream")) from e
    subprocess.run([vivado, "-mode", "batch", "-nojournal", "-log", str(out_dir / "vivado.log"),
                    "-source", str(VIVADO_TCL), "-tclargs", str(facts.resolve())],
                   cwd=out_dir, check=True)
    return out_dir / "waferq.bit"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="export folder (build/<model>/export)")
    ap.add_argument("--out", default=None, help="output folder (default build/<model>/bitstream)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--cosim", action="store_true",
                    help="run C/RTL co-simulation in the HLS step (make bitstream COSIM=1)")
    args = ap.parse_args(argv)
    model = Path(args.model)
    out = Path(args.out) if args.out else model.resolve().parent / "bitstream"
    try:
        print(build(model, out, args.jobs, args.cosim))
    except BuildError as e:
        print(e, file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"make bitstream: {Path(e.cmd[0]).name} failed with status {e.returncode}; "
              f"see its log in {out}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
