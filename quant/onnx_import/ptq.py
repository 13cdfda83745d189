"""Post-training quantization of a float model: ``make ptq``.

    python -m quant.onnx_import.ptq --onnx model.onnx --calib maps.npz --bits 8 --name NAME
    python -m quant.onnx_import.ptq --torch pkg.module:factory --input-shape 1x42x42 ...

A float ONNX file (or a torch module, exported to ONNX first; torch is
imported only for that) is read by ``float_graph``, calibrated with
onnxruntime on the maps given and quantized by ``ptq_quantize`` into the
integer model (once as given and once cross-layer equalized, ``ptq_equalize``,
each with its biases corrected for the channel means the rounding moved,
``ptq_bias``; the one whose argmax agrees more with the float model on the
calibration maps wins), which is written to ``build/<name>/export`` in the
format of ``make export`` and ``make import`` (model.json with a ``graph``
spec, weights.npz, weights.bin), which the board service and the host read as
they read any export.

The float model's input is the map's uint8 codes q times ``--input-scale``
(NCHW): 1/256 is what this project's float nets take (``quant.model.to_input``),
1/255 what many others do. Calibration maps: an NPZ with ``x`` (2-D wafer
maps of any size, preprocessed by ``contract.preprocess.to_model_input``, or
uint8 images [N][H][W][C] of the model's input size, used as they are) and
optionally ``y`` (labels) and ``classes``; an ``LSWMD.pkl``; or ``synth:N``,
N synthetic wafer maps. A held-out part of them (the pickle's test split)
measures the integer model against the float one at W8A8, W6A6 and W4A4,
printed and written to ``build/<name>/ptq/report.json``.

Exit 2, with one sentence, for a node that does not map (naming the node and
its op type) or input that cannot be used.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from contract import blob
from contract.preprocess import is_category_map, to_model_input
from contract.spec import WAFER_CLASSES
from quant.onnx_import import float_graph, ptq_bias
from quant.onnx_import.ptq_equalize import equalize
from quant.onnx_import.ptq_quantize import PTQError, calibrate, compare, float_logits, float_means, quantize

CHOOSE_ON = 256      # calibration maps that correct the biases and choose between variants


def torch_to_onnx(target: str, input_shape: tuple[int, int, int], path: Path) -> Path:
    """Export ``module:factory`` (or ``file.py:factory``) to float ONNX at batch 1."""
    import importlib
    import importlib.util

    import torch

    mod_name, _, factory = target.partition(":")
    if not factory:
        raise PTQError(f"--torch {target!r} must be module:factory")
    if mod_name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(mod_name)
    model = getattr(module, factory)()
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter: seconds faster than dynamo and gives plain Conv/Gemm/Flatten nodes.
    torch.onnx.export(model, (torch.zeros(1, *input_shape),), str(path), dynamo=False,
                      input_names=["input"], output_names=["logits"])
    return path


def to_images(x, shape: tuple[int, int, int]) -> np.ndarray:
    """Maps -> uint8 [N][H][W][C] model input codes."""
    c, h, w = shape
    if isinstance(x, np.ndarray) and x.dtype != object and x.ndim in (3, 4):
        imgs = x if x.ndim == 4 else x[..., None]
        if imgs.shape[1:] == (h, w, c) and not (c == 1 and is_category_map(imgs)):
            if imgs.min() < 0 or imgs.max() > 255:
                raise PTQError(f"image values {imgs.min()}..{imgs.max()} are outside 0..255")
            return imgs.astype(np.uint8)
    if c != 1 or h != w:
        raise PTQError(f"the model takes {c}x{h}x{w} inputs: give uint8 images [N][{h}][{w}][{c}] "
                       "(wafer maps are preprocessed only for square one-channel inputs)")
    return np.stack([to_model_input(m, h) for m in x]) if len(x) else np.zeros((0, h, w, 1), np.uint8)


def load_maps(source: str, shape, n_out: int, holdout: float, limit: int | None, seed: int):
    """(x_cal, y_cal, x_held, y_held, classes or None); labels may be None."""
    classes = None
    if source.startswith("synth"):
        from quant import synth

        n = int(source.partition(":")[2] or 2000)
        maps, y = synth.dataset(n, seed=seed, classes=WAFER_CLASSES[:n_out] if n_out <= 9 else WAFER_CLASSES)
        x = to_images(maps, shape)
    elif source.endswith(".pkl"):
        from quant.datasets import wm811k

        if shape[0] != 1 or shape[1] != shape[2]:
            raise PTQError(f"{source}: wafer maps need a square one-channel model, this one takes {shape}")
        loaded = wm811k.load(source, n_classes=8 if n_out == 8 else 9, size=shape[1], limit=limit, seed=seed)
        return (loaded.train.maps, loaded.train.labels, loaded.test.maps, loaded.test.labels,
                loaded.train.classes)
    elif source.endswith(".npz"):
        try:
            with np.load(source, allow_pickle=True) as z:
                if "x" not in z.files:
                    raise PTQError(f"{source}: expected an array 'x' of maps, found {z.files}")
                x = to_images(z["x"] if z["x"].dtype != object else list(z["x"]), shape)
                y = z["y"].astype(np.int64) if "y" in z.files else None
                classes = tuple(str(c) for c in z["classes"]) if "classes" in z.files else None
        except (OSError, ValueError) as e:
            if isinstance(e, PTQError):
                raise
            raise PTQError(f"cannot read {source}: {e}") from None
    else:
        raise PTQError(f"--calib {source!r}: give an .npz, an LSWMD .pkl or synth:N")
    order = np.random.default_rng(seed).permutation(len(x))
    if limit:
        order = order[:limit]
    n_held = int(round(len(order) * holdout))
    cal, held = order[n_held:], order[:n_held]
    pick = (lambda idx: y[idx]) if y is not None else (lambda idx: None)
    return x[cal], pick(cal), x[held], pick(held), classes


def class_names(n_out: int, given) -> tuple[str, ...]:
    if given:
        if len(given) != n_out:
            raise PTQError(f"{len(given)} class names given, but the model has {n_out} outputs")
        return tuple(given)
    if n_out <= len(WAFER_CLASSES):
        return WAFER_CLASSES[:n_out] if n_out in (8, 9) else tuple(f"class{i}" for i in range(n_out))
    return tuple(f"class{i}" for i in range(n_out))


def _bits(args) -> tuple[int, int]:
    return args.w_bits or args.bits, args.a_bits or args.bits


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"input shape {text!r} must be CxHxW, e.g. 1x42x42")
    return tuple(int(p) for p in parts)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Post-training quantization of a float ONNX or torch model "
                                             "into a waferq export folder.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, help="float ONNX file (NCHW input)")
    src.add_argument("--torch", help="module:factory or file.py:factory returning a torch.nn.Module")
    ap.add_argument("--input-shape", type=_shape, help="CxHxW (required for --torch; overrides the ONNX input)")
    ap.add_argument("--calib", required=True, help="maps.npz (x[, y, classes]), LSWMD .pkl or synth:N")
    ap.add_argument("--name", required=True, help="model name: writes build/<name>/export")
    ap.add_argument("--bits", type=int, default=8, help="weight and activation bits (2..8)")
    ap.add_argument("--w-bits", type=int, help="weight bits (overrides --bits)")
    ap.add_argument("--a-bits", type=int, help="activation bits (overrides --bits)")
    ap.add_argument("--input-scale", default="1/256", help="float input = uint8 code * this (1/256, 1/255, ...)")
    ap.add_argument("--classes", help="comma-separated class names (default: the wafer classes for 8 or 9 outputs)")
    ap.add_argument("--holdout", type=float, default=0.25, help="fraction of an NPZ or synth set kept out of calibration")
    ap.add_argument("--limit", type=int, help="use at most this many maps")
    ap.add_argument("--compare", default="8,6,4", help="also report these WnAn (comma-separated; empty: none)")
    ap.add_argument("--out", type=Path, help="export folder (default build/<name>/export)")
    ap.add_argument("--no-equalize", action="store_true", help="skip cross-layer equalization")
    ap.add_argument("--no-bias-correction", action="store_true", help="keep the biases as rounded")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def load_float(args, work: Path) -> tuple[Path, float_graph.FloatGraph]:
    """The float model's ONNX file (exported first from --torch) and its layers."""
    if args.torch:
        if not args.input_shape:
            raise PTQError("--torch needs --input-shape CxHxW")
        onnx_path = torch_to_onnx(args.torch, args.input_shape, work / "float.onnx")
    else:
        onnx_path = args.onnx
    try:
        model = onnx.load(str(onnx_path))
    except (OSError, DecodeError) as e:
        raise PTQError(f"cannot read the float ONNX file {onnx_path}: {e}") from None
    return onnx_path, float_graph.read(model, args.input_shape)


def run(args) -> dict:
    w_bits, a_bits = _bits(args)
    input_scale = float(Fraction(args.input_scale))
    out = args.out or Path("build") / args.name / "export"
    work = out.parent / "ptq"
    onnx_path, fg = load_float(args, work)
    n_out = fg.layers[-1].w.shape[0]
    x_cal, _, x_held, y_held, file_classes = load_maps(args.calib, fg.input_shape, n_out, args.holdout,
                                                       args.limit, args.seed)
    classes = class_names(n_out, args.classes.split(",") if args.classes else file_classes)
    cal = calibrate(fg, x_cal, input_scale, seed=args.seed)
    source = {"file": str(onnx_path), "torch": args.torch, "calibration": args.calib}
    variants = [("plain", fg)]
    if not args.no_equalize:
        fg_eq = copy.deepcopy(fg)
        if equalize(fg_eq):
            variants.append(("equalized", fg_eq))
    # Equalization helps some nets and bits and hurts others: the calibration maps decide
    # (a random few: a pickle's maps come in file order).
    x_sel = x_cal[np.sort(np.random.default_rng(args.seed).permutation(len(x_cal))[:CHOOSE_ON])]
    ref_sel = float_logits(fg, x_sel, input_scale)
    means = {label: float_means(g, x_sel, input_scale) for label, g in variants}

    def best(wb: int, ab: int):
        scored = []
        for label, g in variants:
            acc_log2: dict[str, int] = {}
            m = quantize(g, cal, wb, ab, input_scale, args.name, classes, dict(source, variant=label), acc_log2)
            if not args.no_bias_correction:
                m = ptq_bias.correct(m, g, means[label], acc_log2, x_sel)
            scored.append((compare(m, ref_sel, x_sel)["agreement"], -len(scored), label, m))
        score, _, label, m = max(scored, key=lambda t: t[:2])
        return m, label, score

    report = {"name": args.name, "float_model": str(onnx_path), "calibration_maps": cal.n_maps,
              "held_out_maps": int(len(x_held)), "notes": fg.notes, "results": []}
    ref = float_logits(fg, x_held, input_scale) if len(x_held) else None
    wanted = [(w_bits, a_bits)] + [(b, b) for b in _compare_bits(args.compare) if (b, b) != (w_bits, a_bits)]
    im = None
    for wb, ab in wanted:
        m, label, score = best(wb, ab)
        im = im or m
        row = {"w_bits": wb, "a_bits": ab, "exported": m is im, "variant": label,
               "bias_corrected": not args.no_bias_correction, "calibration_agreement": score}
        if ref is not None:
            row.update(compare(m, ref, x_held, y_held))
        report["results"].append(row)
    try:
        blob.check_params(im.layers, blob.pack(im))     # what the board service checks before loading
    except blob.BlobError as e:
        raise PTQError(f"the W{w_bits}A{a_bits} integer model is outside what the core takes: {e}") from None
    im.save(out)
    work.mkdir(parents=True, exist_ok=True)
    (work / "report.json").write_text(json.dumps(report, indent=1))
    report["export"], report["topology_hash"] = str(out), im.topology_hash
    return report


def _compare_bits(text: str) -> list[int]:
    return [int(b) for b in text.split(",") if b.strip()]


def print_report(report: dict) -> None:
    print(f"{'bits':<6} {'agreement':>9} {'float acc':>9} {'int acc':>9}   weights "
          f"(integer vs float model on {report['held_out_maps']} held-out maps)")
    for r in report["results"]:
        fmt = lambda k: f"{100 * r[k]:8.1f}%" if k in r else f"{'-':>9}"   # noqa: E731
        print(f"W{r['w_bits']}A{r['a_bits']:<3} {fmt('agreement')} {fmt('float_accuracy')} {fmt('int_accuracy')}"
              f"   {r['variant']}{', exported' if r['exported'] else ''}")
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"wrote {report['export']} (topology 0x{report['topology_hash']:08x}, "
          f"{report['calibration_maps']} calibration maps)")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        print_report(run(args))
    except (PTQError, float_graph.UnsupportedNode, ValueError) as e:
        print(f"ptq: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
