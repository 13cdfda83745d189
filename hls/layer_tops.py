"""Synthesizable test tops of the HLS templates, one per layer kind.

    python -m hls.layer_tops --out build/layer_tops [--kind dwconv ...] [--csim]

Each top is the whole core (stream protocol, weight loader) around one layer
of the kind under test and the smallest logits head (``contract.zoo.LAYER_TOPS``),
so it synthesizes on its own exactly as the real core does. For each kind,
``<out>/<kind>/`` gets:

- ``export/``: a random integer model (``contract.intmodel.random_model``);
- ``hls/firmware/``: the generated C++, folded as ``hls/parallel.json`` says
  (the estimator's default folding);
- ``hls/run_hls.tcl`` and ``hls/tb/``: the vitis_hls script (csim, csynth,
  port check, cosim with WQ_COSIM=1, export for the XC7Z020) and its test
  bench, whose expected replies
  come from the golden model ``hls.refcore``.

``--csim`` compiles each test bench with g++ and runs it: the C simulation of
the top against the golden replies, the same check ``csim_design`` makes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hls import tcl
from hls.folding import ensure_parallel
from hls.generate import generate
from contract.intmodel import random_model
from contract.zoo import LAYER_TOPS, ZooSpec


def spec_for(kind: str, w_bits: int = 4, a_bits: int = 4) -> ZooSpec:
    # 9x9 inputs, 4 channels, 2 classes: odd sizes, and small enough to compile fast.
    return ZooSpec("layer_top", kind=kind, in_size=9, width=4, w_bits=w_bits, a_bits=a_bits,
                   classes=("a", "b"))


def write(kind: str, out: Path, seed: int = 0) -> Path:
    """Model, firmware, TCL and test bench of one top; returns its HLS folder."""
    model = random_model(spec_for(kind), seed)
    export, hls_dir = out / kind / "export", out / kind / "hls"
    model.save(export)
    ensure_parallel(model.layers, hls_dir / "parallel.json")
    generate(export, hls_dir)
    tcl.write(export, hls_dir)
    return hls_dir


def run_testbench(hls_dir: Path) -> subprocess.CompletedProcess:
    """g++ build and run of the top's test bench (what csim_design does)."""
    from hls.csim_build import ap_types_dir, gxx

    fw, tb = hls_dir / "firmware", hls_dir / "tb"
    exe = hls_dir / "tb_waferq"
    subprocess.run([gxx(), "-O1", "-std=c++14", "-w", f"-I{fw}", f"-I{ap_types_dir()}",
                    str(tb / tcl.TB_NAME), str(fw / "waferq_top.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, text=True, timeout=300)
    return subprocess.run([str(exe)], cwd=tb, capture_output=True, text=True, timeout=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("build/layer_tops"))
    ap.add_argument("--kind", action="append", choices=LAYER_TOPS, help="default: every kind")
    ap.add_argument("--csim", action="store_true", help="build and run each test bench with g++")
    args = ap.parse_args(argv)
    failed = 0
    for kind in args.kind or LAYER_TOPS:
        hls_dir = write(kind, args.out)
        line = f"{kind:12s} {hls_dir / 'run_hls.tcl'}"
        if args.csim:
            res = run_testbench(hls_dir)
            failed += res.returncode != 0
            line += f"  csim: {res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.returncode}"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
