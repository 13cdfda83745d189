"""Walk a clean QONNX graph in order and build the integer layer graph.

Each tensor is one of (``quant.onnx_import.values``): a constant, a
quantized constant (weights), the input under float steps the host will run
(``HostIn``), integer codes of an emitted layer (``Codes``), or the
accumulator of a weighted layer whose activation is not known yet (``Acc``).
Constant Mul/Div/Add/Sub, BatchNormalization and Relu fold into the ``Acc``;
the quantizer that follows emits it as a thresholds layer; the ``Acc`` left
at the graph output is the logits layer, and the float steps folded into it
after its MatMul become ``host_post``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qonnx.core.onnx_exec import execute_node

from contract.graph import INPUT, GraphBuilder
from quant.onnx_import import constants, layers, quantizers, residual
from quant.onnx_import.read import attrs, input_chw
from quant.onnx_import.refuse import ImportRefused, node_refused
from quant.onnx_import.values import Acc, Codes, HostIn, QConst

ELEMENTWISE = ("Mul", "Div", "Add", "Sub")
SHAPE_ONLY = ("Reshape", "Flatten")


@dataclass
class Check:
    """After the import, ``(onnx[tensor] - b) / a`` must equal layer ``layer``'s integer output."""
    layer: str
    tensor: str
    a: np.ndarray
    b: np.ndarray
    chw: tuple[int, int, int]
    flat: bool


@dataclass
class Mapped:
    builder: GraphBuilder
    in_chw: tuple[int, int, int]
    in_bits: int
    weights: dict
    host_pre: dict | None
    host_post: dict | None
    checks: list[Check]
    moved: list[str] = field(default_factory=list)     # sentences: what the host now runs


class _Walk:
    def __init__(self, model):
        self.model = model
        self.opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), 11)
        self.in_chw = input_chw(model)
        c, h, w = self.in_chw
        self.builder = None
        self.env: dict = {model.graph.input[0].name: HostIn(self.in_chw, np.array(1.0), np.array(0.0),
                                                            flat=len(model.get_tensor_shape(
                                                                model.graph.input[0].name)) == 2)}
        self.weights: dict = {}
        self.checks: list[Check] = []
        self.moved: list[str] = []
        self.host_pre = None
        self.in_bits = None
        self.count: dict[str, int] = {}

    # --- values ------------------------------------------------------------
    def value(self, name):
        if name in self.env:
            return self.env[name]
        init = self.model.get_initializer(name)
        if init is None:
            raise ImportRefused(f"tensor {name!r} has no producer")
        return np.asarray(init)

    def _name(self, kind: str) -> str:
        i = self.count.get(kind, 0)
        self.count[kind] = i + 1
        return f"{kind}{i}"

    # --- the walk ----------------------------------------------------------
    def run(self) -> Mapped:
        for node in self.model.graph.node:
            ins = [self.value(n) if n else None for n in node.input]
            live = [v for v in ins if isinstance(v, (HostIn, Codes, Acc, residual.Sum))]
            try:
                if not live:
                    self.env[node.output[0]] = self._constant(node, ins)
                else:
                    self.env[node.output[0]] = self._live(node, ins, live[0])
            except ImportRefused:
                raise
            except (ValueError, IndexError, KeyError, TypeError) as e:
                # a shape or attribute this walk did not foresee: still one sentence, naming the node
                raise node_refused(node, f"could not be mapped ({type(e).__name__}: {e})") from None
        out = self.env.get(self.model.graph.output[0].name)
        if not isinstance(out, Acc):
            raise ImportRefused(f"the graph output {self.model.graph.output[0].name!r} is not the "
                                f"float output of a last dense layer")
        post, m, big, note = layers.logits_layer(self.builder, self._name("fc"), out, self.weights)
        name = self.builder.layers[-1]["name"]
        # L = m * acc + big, and the MatMul's real output is alpha0 * (acc + k) + e0.
        self.checks.append(Check(name, out.tensor, out.alpha0 / m, out.e0 + out.alpha0 * (out.k - big / m),
                                 out.out_chw, True))
        if post is not None:
            self.moved.append(f"after {name}: {' -> '.join(out.ops) or 'the weight scale'} "
                              f"(real logit = logit * scale + offset) moved to the host as host_post")
        if note:
            self.moved.append(note)
        return Mapped(self.builder, self.in_chw, self.in_bits, self.weights, self.host_pre, post,
                      self.checks, self.moved)

    def _constant(self, node, ins):
        if node.op_type in ("Quant", "BipolarQuant"):
            return constants.quantized(node, ins)
        if node.op_type == "DequantizeLinear" and np.issubdtype(np.asarray(ins[0]).dtype, np.integer):
            return constants.dequantized(node, ins)
        if node.op_type in ("Transpose", "Reshape") and isinstance(ins[0], QConst):
            q = ins[0]
            if node.op_type == "Transpose":
                perm = attrs(node).get("perm")
                f = (lambda a: np.transpose(a, perm))
            else:
                f = (lambda a: np.reshape(a, [int(d) for d in ins[1]]))
            return QConst(f(q.ints), f(np.broadcast_to(q.scale, q.ints.shape)), q.bits, q.bipolar, q.node)
        ctx = {n: (v.scale * v.ints if isinstance(v, QConst) else v)
               for n, v in zip(node.input, ins) if n}
        for o in node.output:
            ctx[o] = None
        try:
            execute_node(node, ctx, self.model.graph, self.opset)
        except Exception:
            raise node_refused(node, "could not be evaluated as a constant") from None
        return np.asarray(ctx[node.output[0]])

    def _live(self, node, ins, x):
        op = node.op_type
        if op == "Identity" or (op == "Dropout"):
            return x
        if isinstance(x, HostIn):
            return self._host_in(node, ins, x)
        if isinstance(x, residual.Sum):
            return self._sum(node, x)
        if isinstance(x, Codes):
            if op == "Add" and all(isinstance(v, Codes) for v in ins):
                return residual.begin(node, ins[0], ins[1])
            return self._codes(node, ins, x)
        return self._acc(node, ins, x)

    def _sum(self, node, s):
        if node.op_type == "Relu":          # the sum of unsigned codes is never negative
            return s
        if node.op_type in quantizers.QUANTIZERS:
            q = quantizers.read(self.model, node)
            codes = residual.emit(self.builder, self._name("add"), s, q, self.weights)
            self.checks.append(Check(codes.layer, node.output[0], np.array(q.a), np.array([0.0]),
                                     codes.chw, False))
            return codes
        raise node_refused(node, "only a quantizer (or a ReLU) may follow a residual Add")

    # --- before the first quantizer: the host's float steps ---------------
    def _host_in(self, node, ins, x: HostIn):
        op = node.op_type
        if op in ELEMENTWISE:
            k, first = _const_operand(node, ins)
            k = _per_channel(node, k, x.chw[0], x.flat)
            mul, add = _affine(node, op, k, first)
            return HostIn(x.chw, x.mul * mul, x.add * mul + add, x.flat,
                          x.steps + (f"{op} {_short(k)}",))
        if op in SHAPE_ONLY:
            return HostIn(x.chw, x.mul, x.add, self._flat(node, x.chw, x.flat), x.steps)
        if op in ("Quant", "BipolarQuant"):
            return self._input_quant(node, x)
        raise node_refused(node, "is not supported before the first quantizer (the host runs "
                                 "only constant Mul/Div/Add/Sub and reshapes there)")

    def _input_quant(self, node, x: HostIn) -> Codes:
        q = quantizers.read(self.model, node)
        if np.any(np.asarray(x.mul) == 0):
            raise node_refused(node, "its input is multiplied by zero")
        if x.flat and (np.asarray(x.mul).size > 1 or np.asarray(x.add).size > 1):
            raise node_refused(node, "per-channel input steps on a flattened input are not supported")
        if np.any(np.asarray(x.mul) < 0):
            raise node_refused(node, "the input is scaled by a negative number before it")
        scale, offset = x.mul / q.scale, x.add / q.scale + q.shift
        self.host_pre = {"scale": _plain(scale), "offset": _plain(offset), "rule": q.rule}
        if q.rule != "sign":
            self.host_pre["max_code"] = int(q.max_code)
        self.in_bits = q.bits
        c, h, w = self.in_chw
        self.builder = GraphBuilder(h, c, q.bits, in_w=w)
        self.moved.append(f"before the first layer: {' -> '.join(x.steps + (q.describe(),))} moved "
                          f"to the host as host_pre (code = {q.rule}(x * scale + offset))")
        off = np.array([q.off])
        self.checks.append(Check(INPUT, node.output[0], np.array(q.a), q.a * off, self.in_chw, x.flat))
        return Codes(INPUT, q.bits, q.a, off, self.in_chw, x.flat)

    # --- integer codes -----------------------------------------------------
    def _codes(self, node, ins, x: Codes):
        op = node.op_type
        if op in ELEMENTWISE:
            k, first = _const_operand(node, ins)
            mul, add = _affine(node, op, k, first)
            mul = np.asarray(mul, dtype=np.float64)
            if mul.size != 1:
                raise node_refused(node, "a per-channel scale on activation codes is not supported")
            add = _per_channel(node, np.asarray(add), x.chw[0], x.flat) if np.size(add) > 1 else add
            a = x.a * float(mul)
            if a <= 0:
                raise node_refused(node, "it scales activation codes by a number that is not positive")
            return Codes(x.layer, x.bits, a, x.off + np.asarray(add) / a, x.chw, x.flat)
        if op in SHAPE_ONLY:
            return Codes(x.layer, x.bits, x.a, x.off, x.chw, self._flat(node, x.chw, x.flat))
        if op == "MaxPool":
            return self._maxpool(node, x)
        if op == "GlobalAveragePool":
            return self._gap(node, x)
        if op in ("MatMul", "Gemm", "Conv"):
            w = ins[1]
            if not isinstance(w, QConst):
                raise node_refused(node, "its weights are not quantized constants (Quant or BipolarQuant "
                                         "on an initializer)")
            bias = ins[2] if len(ins) > 2 else None
            if isinstance(bias, QConst):        # a quantized bias adds its real value
                bias = bias.scale * bias.ints
            if bias is not None and not isinstance(bias, np.ndarray):
                raise node_refused(node, "its bias is not a float constant")
            if op == "Conv":
                return layers.conv(node, x, w, bias)
            return layers.dense(node, x, w, bias, attrs(node) if op == "Gemm" else None)
        if op in quantizers.QUANTIZERS:
            raise node_refused(node, "quantizes codes that are already integer (a requantization "
                                     "without a weighted layer) which is not supported")
        raise _unsupported(node)

    def _maxpool(self, node, x: Codes) -> Codes:
        at = attrs(node)
        k = list(at.get("kernel_shape", []))
        s = list(at.get("strides", k))
        if x.flat or len(set(k)) != 1 or len(set(s)) != 1 or any(at.get("pads", [0])) \
                or at.get("ceil_mode", 0) or any(d != 1 for d in at.get("dilations", [1])):
            raise node_refused(node, f"kernel {k}, strides {s}: square unpadded pools without "
                                     f"ceil mode are supported")
        if x.a <= 0:
            raise node_refused(node, "it pools codes whose real value falls as the code rises")
        name = self.builder.maxpool(self._name("pool"), pool=k[0], stride=s[0], src=x.layer)
        h, w, c = self.builder.shape(name)
        return Codes(name, x.bits, x.a, x.off, (c, h, w))

    def _gap(self, node, x: Codes) -> Codes:
        """The mean over H x W as the exact sum (our gap layer with shift 0): the
        1 / (H * W) moves into the real scale, so the next layer folds it."""
        if x.flat:
            raise node_refused(node, "it pools a flattened tensor")
        c, h, w = x.chw
        top = h * w * ((1 << x.bits) - 1)
        bits = top.bit_length()
        if bits > 16:
            raise node_refused(node, f"the sum over {h}x{w} positions needs {bits} bits; 16 is the most")
        name = self.builder.gap(self._name("gap"), a_bits=bits, src=x.layer)
        self.weights[f"{name}.shift"] = np.array(0, dtype=np.int32)
        a, off = x.a / (h * w), x.off * (h * w)
        self.checks.append(Check(name, node.output[0], np.array(a), a * off, (c, 1, 1), False))
        return Codes(name, bits, a, off, (c, 1, 1))

    # --- accumulators --------------------------------------------------------
    def _acc(self, node, ins, x: Acc):
        op = node.op_type
        if op in ELEMENTWISE or op == "BatchNormalization":
            if x.relu:
                raise node_refused(node, "a float step after a ReLU and before a quantizer is not supported")
            if op == "BatchNormalization":
                gamma, beta_bn, mean, var = (np.asarray(v, dtype=np.float64).reshape(-1) for v in ins[1:5])
                eps = float(attrs(node).get("epsilon", 1e-5))
                mul = gamma / np.sqrt(var + eps)
                add = beta_bn - mean * mul
            else:
                k, first = _const_operand(node, ins)
                mul, add = _affine(node, op, _per_channel(node, k, x.out_c, x.kind == "dense"), first)
            mul = np.broadcast_to(np.asarray(mul, dtype=np.float64), (x.out_c,))
            add = np.broadcast_to(np.asarray(add, dtype=np.float64), (x.out_c,))
            x.alpha, x.e = x.alpha * mul, x.e * mul + add
            x.ops += (op,)
            return x
        if op == "Relu":
            x.relu = True
            return x
        if op in SHAPE_ONLY and x.kind == "dense":
            return x
        if op in ("Quant", "BipolarQuant", "MultiThreshold"):
            q = quantizers.read(self.model, node)
            name = self._name("conv" if x.kind == "conv2d" else "fc")
            layers.thresholds_layer(self.builder, name, x, q, self.weights)
            off = np.array([q.off])
            self.checks.append(Check(name, node.output[0], np.array(q.a), q.a * off, x.out_chw,
                                     x.kind == "dense"))
            return Codes(name, q.bits, q.a, off, x.out_chw, x.kind == "dense")
        raise _unsupported(node)

    def _flat(self, node, chw, flat: bool) -> bool:
        shape = self.model.get_tensor_shape(node.output[0])
        n = int(np.prod(chw))
        if shape is not None and list(shape) == [1, n]:
            return True
        if shape is not None and [int(d) for d in shape[1:]] == list(chw) and not flat:
            return False
        raise node_refused(node, f"reshapes {chw} to {shape}; only a flatten to [1, {n}] is supported")


def _unsupported(node):
    if node.op_type == "Add":
        return node_refused(node, "adds two computed tensors where one is not an activation (a "
                                  "residual Add maps only between quantized activations)")
    return node_refused(node, "this operation has no integer layer to map to")


def _const_operand(node, ins):
    """(the constant operand, whether it comes first)."""
    if isinstance(ins[0], np.ndarray):
        return np.asarray(ins[0], dtype=np.float64), True
    if isinstance(ins[1], np.ndarray):
        return np.asarray(ins[1], dtype=np.float64), False
    raise _unsupported(node)


def _affine(node, op, k, first):
    """(mul, add) of ``x op k`` (or ``k op x`` when ``first``)."""
    if op == "Mul":
        return k, 0.0
    if op == "Add":
        return 1.0, k
    if op == "Sub":
        return (-1.0, k) if first else (1.0, -k)
    if first:
        raise node_refused(node, "divides a constant by a tensor")
    if np.any(k == 0):
        raise node_refused(node, "divides by zero")
    return 1.0 / k, 0.0


def _per_channel(node, k, channels: int, flat: bool) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    if k.size == 1:
        return k.reshape(())
    if k.size == channels and (flat or k.shape[-2:] in ((1, 1), (channels, 1)) or k.ndim == 1
                               or k.shape[-1] == 1):
        return k.reshape(-1)
    raise node_refused(node, f"its constant of shape {k.shape} is neither one number nor one "
                             f"per channel")


def _plain(v):
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    return float(v[0]) if np.all(v == v[0]) else [float(e) for e in v]


def _short(k) -> str:
    k = np.asarray(k).reshape(-1)
    return f"{k[0]:g}" if np.all(k == k[0]) else f"[{k.size} values]"


def map_graph(model) -> Mapped:
    return _Walk(model).run()
