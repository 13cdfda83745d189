"""`make hls`: generate the C++, write run_hls.tcl and the test bench, run Vitis HLS.

    python -m hls.synth --model build/X/export --hls build/X/hls

Steps: ``hls.generate`` (firmware/), ``hls.tcl`` (run_hls.tcl, tb/), then
``vitis_hls -f run_hls.tcl`` in ``--hls`` (or, where only the unified Vitis is
installed, ``vitis-run --mode hls --tcl run_hls.tcl``: vitis_hls is deprecated
from 2024.2), which C-simulates, synthesizes, checks the synthesized ports,
co-simulates when ``--cosim`` is given (``make hls COSIM=1``) and exports the IP
to ``<hls>/ip``. Without either tool on PATH the run stops after writing the
script, with one sentence on stderr and exit status 2 (the C++ and the TCL are
still there, and ``make csim`` still works).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hls import tcl
from hls.folding import ensure_parallel
from hls.generate import generate
from contract.intmodel import IntModel


class SynthError(Exception):
    """A one-sentence reason synthesis cannot go on."""


def hls_command(script: Path) -> list[str] | None:
    """The command that runs a vitis_hls TCL script here, or None: vitis_hls,
    else the unified Vitis' vitis-run (UG1399: ``vitis-run --mode hls --tcl``)."""
    if (exe := shutil.which("vitis_hls")) is not None:
        return [exe, "-f", str(script.resolve())]
    if (exe := shutil.which("vitis-run")) is not None:
        return [exe, "--mode", "hls", "--tcl", str(script.resolve())]
    return None


def run(model_dir: Path, hls_dir: Path, cosim: bool = False) -> Path:
    ensure_parallel(IntModel.load(model_dir).layers, hls_dir / "parallel.json")
    generate(model_dir, hls_dir)
    script = tcl.write(model_dir, hls_dir)
    cmd = hls_command(script)
    if cmd is None:
        raise SynthError(f"make hls: neither vitis_hls nor vitis-run is on PATH, so {script} was "
                         "written but not run; source the Vitis settings64.sh first.")
    env = dict(os.environ, WQ_COSIM="1" if cosim else "0")
    subprocess.run(cmd, cwd=hls_dir, check=True, env=env)
    if not (hls_dir / "ip").is_dir():
        raise SynthError(f"make hls: Vitis HLS exported no IP repository at {hls_dir / 'ip'}.")
    return hls_dir / "ip"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="export folder (model.json)")
    ap.add_argument("--hls", type=Path, required=True, help="HLS output folder")
    ap.add_argument("--cosim", action="store_true", help="also run C/RTL co-simulation (slow)")
    args = ap.parse_args(argv)
    try:
        print(run(args.model, args.hls, cosim=args.cosim))
    except SynthError as e:
        print(e, file=sys.stderr)
        return 2
    except (tcl.TclError, OSError, ValueError, KeyError) as e:
        print(f"make hls: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"make hls: {Path(e.cmd[0]).name} failed with status {e.returncode}; "
              f"see its log in {args.hls}.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
