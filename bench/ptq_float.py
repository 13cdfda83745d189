"""Post-training quantization of a float model (``make ptq``), measured end to end.

    python -m bench.ptq_float --out build/bench                        # synthetic maps
    python -m bench.ptq_float --data ../shared/data/wm811k-real-train.pkl --out build/bench

Trains the project's float wafer CNN (``quant.floatnet.FloatNet`` of a
``CNNSpec``, batch norms folded) for a few epochs, exports it to float ONNX
with torch, then runs ``quant.onnx_import.ptq`` on it exactly as ``make ptq``
does: calibration on the training maps (or the NPZ's calibration part), and
the integer model against the float one on held-out maps at W8A8, W6A6 and
W4A4 (argmax agreement, both accuracies). Prints a table and writes
``ptq_float.json``. Accuracy only: no timing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from contract.spec import CNNSpec
from quant.fit import float_twin
from quant.onnx_import import ptq
from quant.traindata import make_inputs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="LSWMD-format .pkl (default: synthetic maps)")
    ap.add_argument("--n", type=int, default=3000, help="synthetic training maps (half as many more calibrate and test)")
    ap.add_argument("--size", type=int, default=42)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    args = ap.parse_args(argv)
    work = args.out / "ptq_float"
    work.mkdir(parents=True, exist_ok=True)
    spec = CNNSpec(in_size=args.size)
    if args.data:
        from quant.datasets import wm811k

        loaded = wm811k.load(args.data, n_classes=9, size=args.size, seed=0)
        x, y = loaded.train.maps, loaded.train.labels
        calib = str(args.data)
    else:
        x, y = make_inputs(args.n, seed=7, size=args.size)
        # Calibration and held-out maps are drawn apart from the training maps.
        xc, yc = make_inputs(args.n // 2, seed=8, size=args.size)
        np.savez(work / "maps.npz", x=xc, y=yc)
        calib = str(work / "maps.npz")
    fp = float_twin(spec, x, y, args.epochs, seed=0, bn=True).eval()
    onnx_path = work / "float.onnx"
    torch.onnx.export(fp, (torch.zeros(1, 1, args.size, args.size),), str(onnx_path), dynamo=False,
                      input_names=["input"], output_names=["logits"])
    report = ptq.run(ptq.parser().parse_args(["--onnx", str(onnx_path), "--calib", calib, "--name", "ptq_bench",
                                              "--out", str(work / "export"), "--compare", "8,6,4,3"]))
    ptq.print_report(report)
    report["data"] = str(args.data or f"synthetic, {args.n} maps")
    (args.out / "ptq_float.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
