"""Reading an ONNX file into a clean QONNX graph.

A QCDQ file (QuantizeLinear, optional Clip, DequantizeLinear) is first fused
back into QONNX Quant nodes; then qonnx's cleanup infers shapes, folds every
constant subgraph except the quantizers, and gives nodes and tensors unique
readable names. The graph keeps ONNX's NCHW layout: the mapping translates
to HWC itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import SortGraph
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.qcdq_to_qonnx import QCDQToQuant
from qonnx.util.cleanup import cleanup_model

from quant.onnx_import.refuse import ImportRefused

QONNX_DOMAIN = "qonnx.custom_op.general"
QCDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def load(path: str | Path) -> ModelWrapper:
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"{path}: no such file")
    try:
        proto = onnx.load(str(path))
    except Exception as e:   # onnx raises DecodeError and friends: say it in one sentence
        raise ImportRefused(f"{path} is not an ONNX file ({type(e).__name__})") from None
    model = ModelWrapper(proto)
    try:
        if any(n.op_type in QCDQ_OPS for n in model.graph.node):
            # the fusion reads the quantized tensors' types from value_info
            model = model.transform(InferShapes()).transform(QCDQToQuant())
        model = cleanup_model(model)
        model = model.transform(SortGraph())
    except Exception as e:      # qonnx's passes raise anything; the user gets one sentence
        raise ImportRefused(f"{path}: qonnx could not clean the graph ({type(e).__name__}: {e})") from None
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise ImportRefused(f"{path}: the graph has {len(model.graph.input)} inputs and "
                            f"{len(model.graph.output)} outputs; one of each is supported")
    shape = model.get_tensor_shape(model.graph.input[0].name)
    if shape is None or len(shape) not in (2, 4) or shape[0] != 1:
        raise ImportRefused(f"input {model.graph.input[0].name!r} has shape {shape}; "
                            f"batch-1 NCHW (or N x features) inputs are supported")
    return model


def input_chw(model: ModelWrapper) -> tuple[int, int, int]:
    """(C, H, W) of the graph input; an N x F input is one pixel of F channels."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    if len(shape) == 2:
        return int(shape[1]), 1, 1
    return int(shape[1]), int(shape[2]), int(shape[3])


def constant(model: ModelWrapper, name: str) -> np.ndarray | None:
    """The initializer's value, or None for a computed tensor."""
    value = model.get_initializer(name)
    return None if value is None else np.asarray(value)


def attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
