"""`make hls`: generate the C++, write run_hls.tcl and the test bench, run Vitis HLS.

    python -m hls.synth --model build/X/export --hls build/X/hls

Steps: ``hls.generate`` (firmware/), ``hls.tcl`` (run_hls.tcl, tb/), then
``vitis_hls -f run_hls.tcl`` in ``--hls``, which C-simulates, synthesizes,
co-simulates and exports the IP to ``<hls>/ip``. Without vitis_hls on PATH the
run stops after writing the script, with one sentence on stderr and exit
status 2 (the C++ and the TCL are still there, and ``make csim`` still works).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from hls import tcl
from hls.estimate import ensure_parallel
from hls.generate import generate
from quant.intmodel import IntModel


class SynthError(Exception):
    """A one-sentence reason synthesis cannot go on."""


def run(model_dir: Path, hls_dir: Path) -> Path:
    ensure_parallel(IntModel.load(model_dir).layers, hls_dir / "parallel.json")
    generate(model_dir, hls_dir)
    script = tcl.write(model_dir, hls_dir)
    vitis_hls = shutil.which("vitis_hls")
    if vitis_hls is None:
        raise SynthError(f"make hls: vitis_hls is not on PATH, so {script} was written but not run; "
                         "source the Vitis HLS settings64.sh first.")
    subprocess.run([vitis_hls, "-f", str(script.resolve())], cwd=hls_dir, check=True)
    if not (hls_dir / "ip").is_dir():
        raise SynthError(f"make hls: Vitis HLS exported no IP repository at {hls_dir / 'ip'}.")
    return hls_dir / "ip"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="export folder (model.json)")
    ap.add_argument("--hls", type=Path, required=True, help="HLS output folder")
    args = ap.parse_args(argv)
    try:
        print(run(args.model, args.hls))
    except SynthError as e:
        print(e, file=sys.stderr)
        return 2
    except (tcl.TclError, OSError, ValueError, KeyError) as e:
        print(f"make hls: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"make hls: vitis_hls failed with status {e.returncode}; see {args.hls}/vitis_hls.log.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
