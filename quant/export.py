"""Export a trained ``GraphNet`` to QONNX and to the integer model.

``build/<model>/export/`` receives ``model.qonnx.onnx`` plus the integer model
files (``model.json``, ``weights.npz``, ``weights.bin``; see contract.intmodel).

Layout changes on the way: Brevitas convolves NCHW with OIHW weights and
flattens C,H,W before the dense layer; the integer model and the accelerator
stream HWC, so conv weights become OHWI and the dense weights' input axis is
permuted from (c, h, w) to (h, w, c).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from contract import export_dir
from contract.intmodel import IntModel
from quant.model import GraphNet, to_input


def _log2_exact(scale, what: str) -> int:
    values = torch.as_tensor(scale).detach().flatten().unique()
    if values.numel() != 1:
        raise ValueError(f"{what}: expected one per-tensor scale, got {values.numel()}")
    v = float(values[0])
    k = round(math.log2(v))
    if 2.0 ** k != v:
        raise ValueError(f"{what}: scale {v} is not a power of two; the model is not integer-exact")
    return k


@torch.no_grad()
def to_intmodel(model: GraphNet, sample_u8: np.ndarray) -> IntModel:
    """Integer weights, biases and requant shifts of ``model`` (eval mode)."""
    model.eval()
    trace = model.trace(to_input(sample_u8[:2]))
    scale = {"input": _log2_exact(trace["input"].scale, "input")}
    weights, logit_log2 = {}, 0
    for layer in model.layers:
        name, kind = layer["name"], layer["type"]
        in_log2 = scale[layer["inputs"][0]]
        acc_log2 = in_log2 - layer.get("sum_shift", 0)
        if kind == "add":
            align = model.aligns[name](trace[layer["inputs"][0]])
            acc_log2 = _log2_exact(align.scale, f"{name} alignment")
            for key, src in zip(("shift_a", "shift_b"), layer["inputs"]):
                weights[f"{name}.{key}"] = np.array(acc_log2 - scale[src], dtype=np.int32)
        if kind in ("conv2d", "dense"):
            op = model.ops[name]
            w = op.quant_weight()
            acc_log2 = in_log2 + _log2_exact(w.scale, f"{name} weight")
            weights[f"{name}.w"] = _int_weights(layer, w.int())
            weights[f"{name}.b"] = _int_bias(op.bias, acc_log2)
        if kind != "dense" or layer["requant"]:
            got = _log2_exact(trace[f"{name}.acc"].scale, f"{name} accumulator")
            if got != acc_log2:
                raise ValueError(f"{name}: Brevitas accumulator scale 2**{got} is not 2**{acc_log2}")
        if layer["requant"]:
            scale[name] = _log2_exact(trace[name].scale, f"{name} activation")
            weights[f"{name}.shift"] = np.array(scale[name] - acc_log2, dtype=np.int32)
        elif kind in ("conv2d", "dense"):
            scale[name], logit_log2 = acc_log2, acc_log2
            weights[f"{name}.shift"] = np.array(0, dtype=np.int32)
        else:
            scale[name] = in_log2
    return IntModel(model.spec, weights, logit_scale_log2=logit_log2)


def _int_weights(layer: dict, w_int: torch.Tensor) -> np.ndarray:
    w = w_int.numpy()
    if layer["type"] == "conv2d":
        return w.transpose(0, 2, 3, 1).astype(np.int8)                 # OIHW -> OHWI
    # Brevitas flattens the dense input as (c, h, w); the integer model as (h, w, c).
    h, wd, c = layer["in_h"], layer["in_w"], layer["in_c"]
    w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1)
    return w.reshape(w.shape[0], -1).astype(np.int8)


def _int_bias(bias: torch.Tensor, scale_log2: int) -> np.ndarray:
    # Int32Bias rounds bias / (input scale * weight scale) half to even, as torch.round does.
    q = torch.round(bias.detach() * 2.0 ** (-scale_log2))
    if q.abs().max() >= 2 ** 31:
        raise ValueError("a bias does not fit in int32 at the accumulator scale")
    return q.numpy().astype(np.int32)


def export_qonnx(model: GraphNet, path: Path) -> Path:
    from brevitas.export import export_qonnx as brevitas_export_qonnx

    model.eval()
    s = model.spec
    example = torch.zeros(1, s.in_channels, s.in_size, s.in_size)
    # The dynamo exporter breaks qonnx's GemmToMatMul (see TOOLCHAIN.md).
    brevitas_export_qonnx(model, example, export_path=str(path), dynamo=False)
    return path


def run_qonnx(path: Path, images_u8: np.ndarray) -> np.ndarray:
    """Float logits of the QONNX graph, executed by qonnx's reference executor."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    m = cleanup_model(ModelWrapper(str(path)))
    iname, oname = m.graph.input[0].name, m.graph.output[0].name
    outs = [execute_onnx(m, {iname: to_input(images_u8[i:i + 1]).numpy()})[oname]
            for i in range(len(images_u8))]
    return np.concatenate(outs)


def export(model: GraphNet, out_dir: Path, sample_u8: np.ndarray) -> IntModel:
    out_dir.mkdir(parents=True, exist_ok=True)
    export_qonnx(model, out_dir / "model.qonnx.onnx")
    im = to_intmodel(model, sample_u8)
    im.save(out_dir)
    return im


REJECT_KEYS = ("temperature", "threshold", "target_accuracy", "min_energy", "input", "val_coverage",
               "val_accuracy")


def attach_reject(out_dir: Path, metrics_path: Path) -> dict | None:
    """Copy the reject option calibrated by ``quant.train`` (its metrics.json)
    into model.json under ``reject``, in the form ``quant.metrics.apply_reject``
    reads, and the number of views training evaluated with (``contract.views``)
    under ``views``; the host applies the rule to the logits it gets back
    (``logits_int * 2**logit_scale_log2``, averaged over the views) and the
    model inputs it sent."""
    import json

    if not Path(metrics_path).exists():
        return None
    m = json.loads(Path(metrics_path).read_text())
    rej = m.get("reject")
    rej = {k: rej[k] for k in REJECT_KEYS if k in rej} if rej else None
    export_dir.read(out_dir).with_reject(rej, m.get("views", 1))
    return rej


def main(argv=None) -> int:
    from quant.train import load_checkpoint
    from quant.traindata import make_inputs

    ap = argparse.ArgumentParser(description="Export a trained checkpoint to QONNX and the integer model.")
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    model = load_checkpoint(args.checkpoint)
    sample, _ = make_inputs(64, seed=123, size=model.spec.in_size)
    im = export(model, args.out, sample)
    # Refuse to write a model whose integer twin disagrees with Brevitas.
    with torch.no_grad():
        ref = model(to_input(sample)).numpy().astype(np.float64)
    ints = im.forward(sample).astype(np.float64) * 2.0 ** im.logit_scale_log2
    if not np.array_equal(ref, ints):
        raise SystemExit(f"export: integer model differs from Brevitas on "
                         f"{int((ref != ints).any(axis=1).sum())} of {len(sample)} inputs")
    reject = attach_reject(args.out, args.checkpoint.parent / "metrics.json")
    print(f"exported {model.spec.name} to {args.out} (topology 0x{im.topology_hash:08x}, "
          f"integer model equals Brevitas on {len(sample)} inputs"
          f"{', reject option in model.json' if reject else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
