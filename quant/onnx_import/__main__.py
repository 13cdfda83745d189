"""make import ONNX=model.onnx MODEL=name: exit 0 and a summary, or exit 2 and one sentence."""
import argparse
import sys

from quant.onnx_import.api import import_model
from quant.onnx_import.refuse import ImportRefused


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quant.onnx_import", description=__doc__)
    ap.add_argument("--onnx", required=True, help="QONNX or QCDQ .onnx file")
    ap.add_argument("--name", required=True, help="model name (MODEL)")
    ap.add_argument("--out", required=True, help="export folder to write, build/<name>/export")
    ap.add_argument("--classes", help="comma-separated class names (default class0..)")
    ap.add_argument("--verify", type=int, default=8, help="generated inputs to check (default 8)")
    args = ap.parse_args(argv)
    try:
        report = import_model(args.onnx, args.name, args.out, n_verify=args.verify,
                              classes=args.classes.split(",") if args.classes else None)
    except ImportRefused as e:
        print(f"import refused: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
