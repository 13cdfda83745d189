"""A float ONNX graph read into a short list of float layers, ready for PTQ.

numpy and onnx only (no torch, no onnxruntime). The ONNX graph is NCHW, as
torch exports it; the layers keep torch's layouts (conv weights OIHW, dense
weights [out][in] with ``in`` in C,H,W flatten order); ``quant.onnx_import.ptq``
turns them into the integer model's HWC ones.

Mapped nodes: Conv (with bias), Gemm, MatMul + Add (bias), Add of a
per-channel constant (a bias), BatchNormalization after a Conv or a dense
layer (folded into its weights and bias, exact in eval mode), Relu (also
after a MaxPool: the two commute), MaxPool, GlobalAveragePool and
ReduceMean over H and W, Flatten and Reshape to [N, -1], Add of two
tensors (a residual), and Identity, Dropout and a final Softmax or
LogSoftmax, which change no argmax and are dropped. Anything else is an
``UnsupportedNode`` naming the node and its op type.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

INPUT = "input"
DROPPED = ("Identity", "Dropout")
FINAL_DROPPED = ("Softmax", "LogSoftmax")


class UnsupportedNode(ValueError):
    """A node PTQ cannot map; the message is one sentence naming it."""

    def __init__(self, node: onnx.NodeProto, why: str):
        name = node.name or (node.output[0] if node.output else "?")
        super().__init__(f"node {name!r} (op {node.op_type}) is not supported by PTQ: {why}")


@dataclass
class FloatLayer:
    """One layer of the float model. ``inputs`` are earlier layers' names
    (or INPUT). ``tensor`` is the ONNX tensor holding this layer's value
    (after its bias and batch norm, before a ReLU that ``relu`` records)."""

    kind: str                      # conv, dense, maxpool, gap, add
    name: str
    inputs: list[str]
    tensor: str
    relu: bool = False
    w: np.ndarray | None = None    # conv OIHW, dense [out][in] (C,H,W order)
    b: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    onnx_nodes: list[str] = field(default_factory=list)


@dataclass
class FloatGraph:
    model: onnx.ModelProto
    input_name: str
    input_shape: tuple[int, int, int]          # C, H, W
    batch: int                                  # the input's fixed batch size, 0 if symbolic
    layers: list[FloatLayer]
    output: str                                 # the ONNX tensor of the logits
    notes: list[str]


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _input_shape(model: onnx.ModelProto, override) -> tuple[str, tuple[int, int, int], int]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"the float model must have one input, it has {len(inputs)}")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"the float model's input {inputs[0].name!r} must be N,C,H,W, it has {len(dims)} axes")
    if override and any(d and d != o for d, o in zip(dims[1:], override)):
        raise ValueError(f"--input-shape {'x'.join(map(str, override))} does not match the float model's "
                         f"input {inputs[0].name!r} of {dims[1:]}")
    shape = tuple(override) if override else tuple(dims[1:])
    if any(not d for d in shape):
        raise ValueError(f"the float model's input {inputs[0].name!r} has symbolic sizes {dims}: "
                         "give --input-shape CxHxW")
    return inputs[0].name, shape, dims[0] or 0


class _Reader:
    def __init__(self, model: onnx.ModelProto):
        self.consts = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
        self.consumers: dict[str, int] = {}
        for node in model.graph.node:
            for t in node.input:
                self.consumers[t] = self.consumers.get(t, 0) + 1
        for out in model.graph.output:
            self.consumers[out.name] = self.consumers.get(out.name, 0) + 1
        self.by_tensor: dict[str, FloatLayer] = {}     # ONNX tensor -> the layer whose value it is
        self.flat: set[str] = set()                    # tensors flattened to [N, -1]
        self.layers: list[FloatLayer] = []
        self.count: dict[str, int] = {}
        self.notes: list[str] = []
        self.input_aliases: set[str] = set()

    def new(self, kind, node, inputs, **kw) -> FloatLayer:
        prefix = {"conv": "conv", "dense": "fc", "maxpool": "pool", "gap": "gap", "add": "add"}[kind]
        n = self.count.get(prefix, 0)
        self.count[prefix] = n + 1
        layer = FloatLayer(kind, f"{prefix}{n}", inputs, node.output[0], onnx_nodes=[node.name], **kw)
        self.layers.append(layer)
        self.by_tensor[node.output[0]] = layer
        return layer

    def src(self, node, tensor: str) -> str:
        if tensor == self.input_name or tensor in self.input_aliases:
            return INPUT
        if tensor not in self.by_tensor:
            raise UnsupportedNode(node, f"its input {tensor!r} is not the model input or a mapped layer's output")
        return self.by_tensor[tensor].name

    def const(self, node, tensor: str, what: str) -> np.ndarray:
        if tensor not in self.consts:
            raise UnsupportedNode(node, f"its {what} {tensor!r} is not a constant")
        return self.consts[tensor]

    def sole_producer(self, node, kinds) -> FloatLayer:
        """The layer a folding node (bias, batch norm, ReLU) applies to."""
        layer = self.by_tensor.get(node.input[0])
        if layer is None or layer.kind not in kinds or layer.tensor != node.input[0]:
            raise UnsupportedNode(node, f"it must follow a {' or '.join(kinds)} layer")
        if self.consumers.get(node.input[0], 0) != 1:
            raise UnsupportedNode(node, f"its input {node.input[0]!r} is also read elsewhere")
        return layer

    def alias(self, node, layer: FloatLayer, move_tensor: bool) -> None:
        self.by_tensor[node.output[0]] = layer
        layer.onnx_nodes.append(node.name)
        if node.input[0] in self.flat:
            self.flat.add(node.output[0])
        if move_tensor:
            layer.tensor = node.output[0]


def _conv(r: _Reader, node) -> None:
    a = _attrs(node)
    w = r.const(node, node.input[1], "weight")
    b = r.const(node, node.input[2], "bias") if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
    k = w.shape[2:]
    pads = list(a.get("pads", [0, 0, 0, 0]))
    strides = list(a.get("strides", [1, 1]))
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedNode(node, "auto_pad is not supported, give explicit pads")
    if len(k) != 2 or k[0] != k[1] or len(set(pads)) != 1 or strides[0] != strides[1] \
            or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise UnsupportedNode(node, f"only square 2-D kernels with equal pads and strides and no dilation "
                                    f"map (kernel {list(k)}, pads {pads}, strides {strides})")
    r.new("conv", node, [r.src(node, node.input[0])], w=w, b=b.reshape(-1),
          attrs=dict(kernel=int(k[0]), stride=int(strides[0]), pad=int(pads[0]), groups=int(a.get("group", 1))))


def _gemm(r: _Reader, node) -> None:
    a = _attrs(node)
    if a.get("transA", 0):
        raise UnsupportedNode(node, "transA is not supported")
    w = r.const(node, node.input[1], "weight")
    w = (w if a.get("transB", 0) else w.T) * a.get("alpha", 1.0)
    b = r.const(node, node.input[2], "bias") * a.get("beta", 1.0) if len(node.input) > 2 and node.input[2] \
        else np.zeros(w.shape[0])
    _dense(r, node, w, np.broadcast_to(b.reshape(-1), (w.shape[0],)).copy())


def _dense(r: _Reader, node, w, b) -> None:
    if node.input[0] not in r.flat:
        raise UnsupportedNode(node, "a dense layer must read a tensor flattened to [N, -1] "
                                    "(Flatten, or Reshape to [N, -1])")
    r.new("dense", node, [r.src(node, node.input[0])], w=w, b=b)
    r.flat.add(node.output[0])


def _add(r: _Reader, node) -> None:
    x, y = node.input
    if y in r.consts or x in r.consts:
        x, y = (x, y) if y in r.consts else (y, x)
        layer = r.by_tensor.get(x)
        if layer is None or layer.kind not in ("conv", "dense") or layer.relu:
            raise UnsupportedNode(node, "a constant may only be added to a conv or dense output (a bias)")
        bias = r.consts[y]
        # One value a channel broadcasts as [C, 1, 1] on NCHW (a bare [C] would run along W), [C] on [N, C].
        n = layer.b.size
        shape = tuple(bias.shape[next((i for i, d in enumerate(bias.shape) if d != 1), bias.ndim):])
        if bias.size != 1 and shape != ((n, 1, 1) if layer.kind == "conv" else (n,)):
            raise UnsupportedNode(node, f"its constant of shape {list(bias.shape)} is not one value per channel")
        r.sole_producer(node, ("conv", "dense"))
        layer.b = layer.b + np.broadcast_to(bias.reshape(-1), (n,))
        r.alias(node, layer, move_tensor=True)
        return
    r.new("add", node, [r.src(node, x), r.src(node, y)])


def _batchnorm(r: _Reader, node) -> None:
    layer = r.sole_producer(node, ("conv", "dense"))
    gamma, beta, mean, var = (r.const(node, t, "statistic") for t in node.input[1:5])
    scale = gamma / np.sqrt(var + _attrs(node).get("epsilon", 1e-5))
    layer.w = layer.w * scale.reshape((-1,) + (1,) * (layer.w.ndim - 1))
    layer.b = (layer.b - mean) * scale + beta
    r.alias(node, layer, move_tensor=True)


def _relu(r: _Reader, node) -> None:
    layer = r.by_tensor.get(node.input[0])
    if layer is not None and layer.kind == "maxpool" and r.consumers.get(node.input[0], 0) == 1:
        # relu(maxpool(x)) == maxpool(relu(x)): the ReLU moves onto the pool's producer.
        prod = next((p for p in r.layers if p.name == layer.inputs[0]), None)
        if prod is not None and prod.kind in ("conv", "dense", "add", "gap") \
                and r.consumers.get(prod.tensor, 0) == 1:
            prod.relu = True
            r.alias(node, layer, move_tensor=False)
            return
    layer = r.sole_producer(node, ("conv", "dense", "add", "gap"))
    layer.relu = True
    r.alias(node, layer, move_tensor=False)


def _maxpool(r: _Reader, node) -> None:
    a = _attrs(node)
    k = list(a["kernel_shape"])
    s = list(a.get("strides", k))
    if len(k) != 2 or k[0] != k[1] or s[0] != s[1] or any(a.get("pads", [0])) \
            or any(d != 1 for d in a.get("dilations", [1, 1])) or len(node.output) > 1:
        raise UnsupportedNode(node, f"only square pools without padding map (kernel {k}, strides {s})")
    r.new("maxpool", node, [r.src(node, node.input[0])], attrs=dict(pool=int(k[0]), stride=int(s[0]),
                                                                     ceil_mode=int(a.get("ceil_mode", 0))))


def _reduce_mean(r: _Reader, node) -> None:
    a = _attrs(node)
    axes = [2, 3] if node.op_type == "GlobalAveragePool" else a.get("axes")
    if axes is None and len(node.input) > 1:
        axes = r.const(node, node.input[1], "axes").astype(int).tolist()
    if sorted(int(x) % 4 for x in (axes or [])) != [2, 3]:
        raise UnsupportedNode(node, f"only a mean over H and W (axes 2, 3) maps, not axes {axes}")
    r.new("gap", node, [r.src(node, node.input[0])])
    if not a.get("keepdims", 1):
        r.flat.add(node.output[0])


def _flatten(r: _Reader, node) -> None:
    if node.op_type == "Flatten" and _attrs(node).get("axis", 1) != 1:
        raise UnsupportedNode(node, "only Flatten with axis 1 maps")
    if node.op_type == "Reshape":
        # A graph exported at batch 1 says [1, -1] or [1, n]: a flatten either way.
        shape = r.const(node, node.input[1], "shape").astype(int).tolist()
        if len(shape) != 2 or shape[0] < -1 or (shape[0] == -1 and shape[1] == -1):
            raise UnsupportedNode(node, f"only a reshape to [N, -1] maps, not to {shape}")
    src = node.input[0]
    if src == r.input_name:
        r.input_aliases.add(node.output[0])      # an MLP: the first dense reads the input's HWC flatten
    elif src in r.by_tensor:
        r.alias(node, r.by_tensor[src], move_tensor=False)
    else:
        raise UnsupportedNode(node, f"its input {src!r} is not the model input or a mapped layer's output")
    r.flat.add(node.output[0])


def _matmul(r: _Reader, node) -> None:
    w = r.const(node, node.input[1], "weight")
    if w.ndim != 2:
        raise UnsupportedNode(node, "only a MatMul by a 2-D constant maps")
    _dense(r, node, w.T, np.zeros(w.shape[1]))


HANDLERS = {"Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "Add": _add, "BatchNormalization": _batchnorm,
            "Relu": _relu, "MaxPool": _maxpool, "GlobalAveragePool": _reduce_mean, "ReduceMean": _reduce_mean,
            "Flatten": _flatten, "Reshape": _flatten}


def read(model: onnx.ModelProto, input_shape=None) -> FloatGraph:
    """Map ``model`` onto float layers; raise UnsupportedNode (or ValueError for
    the graph's interface) where it cannot."""
    r = _Reader(model)
    r.input_name, shape, batch = _input_shape(model, input_shape)
    if len(model.graph.output) != 1:
        raise ValueError(f"the float model must have one output (the logits), it has {len(model.graph.output)}")
    output = model.graph.output[0].name
    for node in model.graph.node:
        if node.op_type == "Constant":
            r.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).astype(np.float64)
        elif node.op_type in DROPPED or (node.op_type in FINAL_DROPPED and node.output[0] == output):
            if node.input[0] not in r.by_tensor:
                raise UnsupportedNode(node, "it must follow a mapped layer")
            r.alias(node, r.by_tensor[node.input[0]], move_tensor=False)
            if node.op_type in FINAL_DROPPED:
                r.notes.append(f"the final {node.op_type} ({node.name}) is dropped: it changes no argmax")
        elif node.op_type in HANDLERS:
            HANDLERS[node.op_type](r, node)
        else:
            raise UnsupportedNode(node, "no mapping to the integer layer graph for this op type")
    last = r.by_tensor.get(output)
    if last is None or last is not r.layers[-1] or last.kind != "dense":
        raise ValueError(f"the float model's output {output!r} must come from its last layer, a dense "
                         "(Gemm or MatMul) layer giving the logits")
    if last.relu:
        raise ValueError(f"the logits layer {last.onnx_nodes[0]!r} ends in a ReLU; the logits layer has no activation")
    return FloatGraph(model, r.input_name, shape, batch, r.layers, last.tensor, r.notes)
