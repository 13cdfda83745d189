"""Train a model family: FP32 pre-training, QAT fine-tuning, report.

    python -m quant.train --out build/wmcnn_4w4a/train                # synthetic wafer maps
    python -m quant.train --out DIR --data LSWMD.pkl --limit 4000     # real WM-811K
    python -m quant.train --out DIR --family xception_fpn             # synthetic buffer zone

Maps go through the host's ``to_model_input``, the same code the production
host runs, so training and inference see identical pixels.

Writes ``checkpoint.pt`` (the QAT model: state dict + spec), ``fp32.pt``,
``metrics.json``, ``report.html`` with the confusion matrices and the
coverage/accuracy curve of the reject option, whose calibrated threshold is
stored in ``metrics.json`` for the host.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from host_stm32mp1.preprocess import to_model_input
from quant import metrics, synth
from quant.fit import fit, from_float, predict_logits, train_qat
from quant.model import GraphNet
from quant.spec import CNNSpec, spec_from_dict
from quant.zoo import FAMILIES, WAFER_FAMILIES, ZooSpec, buffer_spec


def make_inputs(n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic maps preprocessed to uint8 [N][size][size][1], and labels."""
    maps, labels = synth.dataset(n, seed=seed)
    return preprocess(maps, size), labels


def preprocess(maps, size: int) -> np.ndarray:
    return np.stack([to_model_input(m, size) for m in maps])


def train(spec, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, batch: int = 64,
          lr: float = 2e-3, **kw) -> GraphNet:
    """QAT from scratch (no float pre-training): the quick path the tests use."""
    torch.manual_seed(seed)
    return fit(GraphNet(spec), x, y, epochs, seed, batch=batch, lr=lr, desc="qat", **kw)


def save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    torch.save({"spec": model.spec.to_dict(), "state_dict": model.state_dict()}, path)


def load_checkpoint(path: Path) -> GraphNet:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = GraphNet(spec_from_dict(ckpt["spec"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def make_spec(args):
    if args.family == "wmcnn":
        return CNNSpec.uniform(args.w_bits, args.a_bits, in_size=args.size, classes=args.classes)
    if args.family == "xception_fpn":
        return buffer_spec(args.w_bits, args.a_bits, in_size=args.size)
    return ZooSpec(args.family, in_size=args.size, w_bits=args.w_bits, a_bits=args.a_bits,
                   classes=args.classes)


def load_data(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test), uint8 HWC inputs and class indices."""
    if args.family == "xception_fpn" and args.data is None:
        from quant import buffer_synth

        x, y, _ = buffer_synth.dataset(args.n_train, seed=args.seed, size=args.size)
        xt, yt, _ = buffer_synth.dataset(args.n_test, seed=args.seed + 1000, size=args.size)
        return x[..., None], y, xt[..., None], yt
    if args.data is None:
        x, y = make_inputs(args.n_train, args.seed, args.size)
        return (*_pick_classes(x, y, args), *_pick_classes(*make_inputs(args.n_test, args.seed + 1000,
                                                                        args.size), args))
    if args.data.suffix == ".pkl":
        from quant.datasets import wm811k

        loaded = wm811k.load(args.data, n_classes=8 if args.eight_classes else 9, size=args.size,
                             limit=args.limit, seed=args.seed)
        print(f"{args.data}: {len(loaded.train.labels)} train and {len(loaded.test.labels)} test maps "
              f"(split from {loaded.split_source}; skipped {loaded.skipped})")
        return loaded.train.maps, loaded.train.labels, loaded.test.maps, loaded.test.labels
    if args.data.suffix == ".npz":
        with np.load(args.data, allow_pickle=True) as z:
            if "x" not in z.files or "y" not in z.files:
                raise SystemExit(f"{args.data}: expected arrays 'x' (maps) and 'y' (labels), found {z.files}")
            x, y = preprocess(list(z["x"]), args.size), z["y"].astype(np.int64)
        order = np.random.default_rng(args.seed).permutation(len(x))
        n_test = max(1, len(x) // 5)
        return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]
    raise SystemExit(f"{args.data}: unsupported data file (use LSWMD .pkl or an NPZ with x and y)")


def _pick_classes(x, y, args):
    if not args.eight_classes:
        return x, y
    keep = y != synth.WAFER_CLASSES.index("none")
    return x[keep], y[keep]


def run(args) -> dict:
    if args.eight_classes:
        args.classes = tuple(c for c in synth.WAFER_CLASSES if c != "none")
    spec = make_spec(args)
    x, y, x_test, y_test = load_data(args)
    n_val = max(len(x) // 10, 1)
    x_val, y_val, x, y = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
    t0 = time.time()
    kw = dict(batch=args.batch, loss=args.loss, balanced=args.balanced)
    fp, q = train_qat(spec, x, y, args.fp_epochs, args.qat_epochs, args.seed, **kw)
    results = {"model": spec.name, "train_seconds": None}
    logits = {"fp32": predict_logits(fp, x_test), "qat": predict_logits(q, x_test)}
    if args.ptq:
        ptq_spec = make_spec(argparse.Namespace(**{**vars(args), "w_bits": 8, "a_bits": 8}))
        logits["ptq8"] = predict_logits(from_float(ptq_spec, fp, x[:512]), x_test)
    results["train_seconds"] = time.time() - t0
    for key, lg in logits.items():
        results[key] = metrics.summary(y_test, lg.argmax(1), spec.classes)
    reject = metrics.calibrate_reject(predict_logits(q, x_val), y_val, args.target_accuracy)
    results["reject"] = {**reject, **metrics.summary(y_test, metrics.apply_reject(logits["qat"], reject),
                                                     spec.classes)}
    results["coverage_curve"] = metrics.coverage_curve(metrics.softmax(logits["qat"], reject["temperature"]),
                                                       y_test)
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(q, args.out / "checkpoint.pt")
    save_checkpoint(fp, args.out / "fp32.pt")
    figures = []
    for key in logits:
        cm = np.array(results[key]["confusion"])
        metrics.plot_confusion(cm, spec.classes, args.out / f"confusion_{key}.png",
                               f"{spec.name} {key}: {100 * results[key]['accuracy']:.1f}%")
        figures.append(f"confusion_{key}.png")
    metrics.write_report(args.out, spec.name, spec.classes, results, figures)
    (args.out / "metrics.json").write_text(json.dumps(results, indent=1))
    return results


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="FP32 pre-training, then QAT, of a model family.")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--family", default="wmcnn", choices=("wmcnn", *FAMILIES))
    ap.add_argument("--data", type=Path, help="LSWMD.pkl or an NPZ with 'x' maps and 'y' labels "
                    "(default: synthetic)")
    ap.add_argument("--w-bits", type=int, default=4, help="weight bits for every layer (2..8)")
    ap.add_argument("--a-bits", type=int, default=4, help="activation bits for every layer (2..8)")
    ap.add_argument("--size", type=int, default=None, help="model input side (42 or 64 for wafer maps)")
    ap.add_argument("--eight-classes", action="store_true", help="drop 'none', as the paper does")
    ap.add_argument("--limit", type=int, default=None, help="at most this many labelled maps of a real file")
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--fp-epochs", type=int, default=6)
    ap.add_argument("--qat-epochs", "--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--loss", default="ce", choices=("ce", "focal"))
    ap.add_argument("--balanced", action="store_true", help="class-balanced sampling")
    ap.add_argument("--ptq", action="store_true", help="also report an 8-bit post-training-quantized twin")
    ap.add_argument("--target-accuracy", type=float, default=0.99,
                    help="accuracy the reject threshold aims for on accepted maps")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.size = args.size or (64 if args.family == "xception_fpn" else 42)
    args.classes = synth.WAFER_CLASSES
    if args.family not in ("wmcnn", *WAFER_FAMILIES, "xception_fpn"):
        raise SystemExit(f"unknown family {args.family}")
    res = run(args)
    line = "  ".join(f"{k} {100 * res[k]['accuracy']:.2f}%" for k in ("fp32", "qat", "ptq8") if k in res)
    print(f"{res['model']}: {line}; reject at {100 * res['reject']['target_accuracy']:.0f}% target: "
          f"coverage {res['reject']['accepted']}/{res['reject']['n']} ({res['train_seconds']:.0f} s); "
          f"report in {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
