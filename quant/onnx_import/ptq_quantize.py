"""Post-training quantization of a float graph (``float_graph``) into the
integer model (``contract.intmodel.IntModel`` with a ``GraphSpec``).

numpy, onnx and onnxruntime; no torch. Steps:

1. ``calibrate``: onnxruntime runs the float model on the calibration maps
   (uint8 codes q, fed as ``q * input_scale``, NCHW) with every layer's
   tensor added to the graph's outputs, and keeps a sample of each.
2. ``quantize``: walks the layers in order with a ``GraphBuilder``. Every
   integer tensor t holds codes whose real value is ``code * 2**log2[t]`` and
   stands for ``gain[t]`` times the float tensor: the input codes are
   ``q * 2**-8`` (``contract.spec.INPUT_SCALE_LOG2``), so their gain is
   ``2**-8 / input_scale``; the integer GAP divides by ``2**sum_shift``
   instead of ``H*W``, which multiplies its gain by ``H*W / 2**sum_shift``. A
   weighted layer divides its float weights by its input's gain, so its
   output has gain 1 again. Weights are quantized per tensor at ``w_bits``,
   biases at the accumulator scale, and each requantization shift is the
   calibrated output exponent minus the accumulator's.
3. Conv weights go from OIHW to the integer model's OHWI; the first dense
   layer after convolutions reads an HWC flatten, so its input axis is
   permuted from (c, h, w) to (h, w, c).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from contract.graph import INPUT, GraphBuilder
from contract.graphspec import GraphSpec
from contract.intmodel import IntModel
from contract.spec import INPUT_SCALE_LOG2
from quant.onnx_import import ptq_scales
from quant.onnx_import.float_graph import FloatGraph

SAMPLES_PER_TENSOR = 1 << 19       # calibration values kept per tensor for the MSE search


class PTQError(ValueError):
    """The float model cannot be quantized as given (one sentence)."""


class FloatRunner:
    """onnxruntime on the float model, returning chosen tensors by name."""

    def __init__(self, fg: FloatGraph, tensors: list[str], input_scale: float, threads: int = 1):
        import onnxruntime as ort

        model = onnx.ModelProto()
        model.CopyFrom(fg.model)
        have = {o.name for o in model.graph.output}
        for t in tensors:
            if t not in have:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:      # onnxruntime's errors derive from Exception only
            raise PTQError(f"onnxruntime cannot load the float model: {str(e).splitlines()[0]}") from None
        self.tensors, self.input_name, self.input_scale = list(tensors), fg.input_name, input_scale
        self.fixed = fg.batch > 0
        self.batch = fg.batch or 256          # a graph exported at batch 1 runs one map a call

    def batches(self, x_u8: np.ndarray):
        """Yield {tensor: float array} for consecutive batches of uint8 HWC maps."""
        for i in range(0, len(x_u8), self.batch):
            chunk = x_u8[i:i + self.batch]
            n = len(chunk)
            x = chunk.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(self.input_scale)
            if n < self.batch and self.fixed:     # a fixed batch is padded, the padding dropped
                x = np.concatenate([x, np.zeros((self.batch - n, *x.shape[1:]), np.float32)])
            try:
                outs = self.session.run(self.tensors, {self.input_name: x})
            except Exception as e:
                raise PTQError(f"onnxruntime cannot run the float model: {str(e).splitlines()[0]}") from None
            yield {t: o[:n] for t, o in zip(self.tensors, outs)}

    def run(self, x_u8: np.ndarray) -> dict[str, np.ndarray]:
        parts = list(self.batches(x_u8))
        return {t: np.concatenate([p[t] for p in parts]) for t in self.tensors}


@dataclass
class Calibration:
    samples: dict[str, np.ndarray]                  # layer name -> float values (no gain, no ReLU)
    channels: dict[str, np.ndarray]                 # layer name -> each sample's channel
    shapes: dict[str, tuple[int, ...]]              # layer name -> ORT shape without N
    n_maps: int


def calibrate(fg: FloatGraph, x_u8: np.ndarray, input_scale: float, seed: int = 0) -> Calibration:
    if len(x_u8) == 0:
        raise PTQError("no calibration maps were given")
    layers = [lay for lay in fg.layers if lay.kind in ("conv", "dense", "gap", "add")]
    runner = FloatRunner(fg, [lay.tensor for lay in layers], input_scale)
    rng = np.random.default_rng(seed)
    per_batch = max(1, SAMPLES_PER_TENSOR * runner.batch // len(x_u8))
    kept: dict[str, list[np.ndarray]] = {lay.name: [] for lay in layers}
    chans: dict[str, list[np.ndarray]] = {lay.name: [] for lay in layers}
    shapes = {}
    for outs in runner.batches(x_u8):
        for lay in layers:
            v = outs[lay.tensor]
            shapes[lay.name] = v.shape[1:]
            inner = int(np.prod(v.shape[2:], dtype=np.int64))
            v = v.ravel()
            idx = np.arange(v.size)
            if v.size > per_batch:
                # The extremes always stay: they decide the scale that clips nothing.
                idx = np.concatenate([[v.argmax(), v.argmin()], rng.choice(v.size, per_batch, replace=False)])
            kept[lay.name].append(v[idx].astype(np.float64))
            chans[lay.name].append((idx // inner) % v_channels(shapes[lay.name]))
    return Calibration({k: np.concatenate(v) for k, v in kept.items()},
                       {k: np.concatenate(v) for k, v in chans.items()}, shapes, len(x_u8))


def v_channels(shape: tuple[int, ...]) -> int:
    return int(shape[0]) if shape else 1


def _check_shape(lay, b: GraphBuilder, cal: Calibration) -> None:
    got = cal.shapes.get(lay.name)
    if got is None:
        return
    h, w, c = b.shape(lay.name)
    if (tuple(got) != (c, h, w)) if len(got) == 3 else int(np.prod(got)) != h * w * c:
        raise PTQError(f"layer {lay.name} ({lay.onnx_nodes[0]}): onnxruntime gives shape {list(got)}, "
                       f"the integer layer {[c, h, w]} (C,H,W); its padding or pooling does not map")


def quantize(fg: FloatGraph, cal: Calibration, w_bits: int, a_bits: int, input_scale: float,
             name: str, classes, source: dict | None = None, acc_log2: dict | None = None) -> IntModel:
    """The integer model of ``fg`` at W``w_bits`` A``a_bits``; ``acc_log2``, if
    given, receives each weighted layer's accumulator exponent."""
    c, h, w = fg.input_shape
    b = GraphBuilder(h, c, 8, in_w=w)
    log2 = {INPUT: INPUT_SCALE_LOG2}
    gain = {INPUT: 2.0 ** INPUT_SCALE_LOG2 / input_scale}
    signed = {INPUT: False}
    weights: dict[str, np.ndarray] = {}
    logit_log2 = 0
    last = fg.layers[-1]

    def out_log2(lay, acc_log2: int, gain_out: float, unsigned: bool) -> int:
        v = cal.samples[lay.name] * gain_out
        if "eq" in lay.attrs:        # cross-layer equalization's per-channel factor
            v = v * lay.attrs["eq"][cal.channels[lay.name]]
        if unsigned:
            v = np.maximum(v, 0.0)
        k = ptq_scales.act_log2(v, a_bits, unsigned=unsigned)
        weights[f"{lay.name}.shift"] = np.array(k - acc_log2, dtype=np.int32)
        return k

    for lay in fg.layers:
        src = lay.inputs[0]
        if lay.kind in ("conv", "dense"):
            fw = lay.w / gain[src]
            wq, kw = ptq_scales.quantize_weights(fw, w_bits)
            acc = log2[src] + kw
            if acc_log2 is not None:
                acc_log2[lay.name] = acc
            if lay.kind == "conv":
                a = lay.attrs
                in_c = b.shape(src)[2]
                if a["groups"] != 1 and not a["groups"] == in_c == fw.shape[0]:
                    raise PTQError(f"layer {lay.name} ({lay.onnx_nodes[0]}): groups {a['groups']} map only "
                                   "as 1 or depthwise (groups == in and out channels)")
                b.conv(lay.name, fw.shape[0], a["kernel"], a["stride"], a["pad"], a["groups"], w_bits,
                       a_bits, relu=lay.relu, src=src)
                weights[f"{lay.name}.w"] = wq.transpose(0, 2, 3, 1)              # OIHW -> OHWI
            else:
                hh, ww, cc = b.shape(src)
                if fw.shape[1] != hh * ww * cc:
                    raise PTQError(f"layer {lay.name} ({lay.onnx_nodes[0]}): {fw.shape[1]} inputs, but "
                                   f"{src} gives {cc}x{hh}x{ww}")
                b.dense(lay.name, fw.shape[0], w_bits, a_bits, relu=lay.relu, logits=lay is last, src=src)
                # The float model flattens (c, h, w); the integer model (h, w, c).
                wq = wq.reshape(-1, cc, hh, ww).transpose(0, 2, 3, 1).reshape(wq.shape[0], -1)
                weights[f"{lay.name}.w"] = np.ascontiguousarray(wq)
            weights[f"{lay.name}.b"] = ptq_scales.bias_codes(lay.b, acc, lay.name)
            gain[lay.name] = 1.0
            if lay is last:
                weights[f"{lay.name}.shift"] = np.array(0, dtype=np.int32)
                log2[lay.name] = logit_log2 = acc
            else:
                log2[lay.name] = out_log2(lay, acc, 1.0, lay.relu)
            signed[lay.name] = not lay.relu
        elif lay.kind == "maxpool":
            hh, ww, _ = b.shape(src)
            p, s = lay.attrs["pool"], lay.attrs["stride"]
            if lay.attrs["ceil_mode"] and ((hh - p) % s or (ww - p) % s):
                raise PTQError(f"layer {lay.name} ({lay.onnx_nodes[0]}): ceil_mode pools a partial window, "
                               "which the integer maxpool drops")
            b.maxpool(lay.name, p, s, src=src)
            log2[lay.name], gain[lay.name], signed[lay.name] = log2[src], gain[src], signed[src]
        elif lay.kind == "gap":
            if signed[src]:
                raise PTQError(f"layer {lay.name} ({lay.onnx_nodes[0]}): the integer GAP averages unsigned "
                               "codes, but its input has no ReLU")
            hh, ww, _ = b.shape(src)
            b.gap(lay.name, a_bits, src=src)
            ss = b.layers[-1]["sum_shift"]
            gain[lay.name] = gain[src] * hh * ww / 2.0 ** ss
            # An average of non-negative codes: unsigned whether or not a ReLU follows.
            log2[lay.name] = out_log2(lay, log2[src] - ss, gain[lay.name], True)
            signed[lay.name] = False
        elif lay.kind == "add":
            x, y = lay.inputs
            if not np.isclose(gain[x], gain[y], rtol=1e-12):
                raise PTQError(f"layer {lay.name} ({lay.onnx_nodes[0]}): its inputs carry different "
                               "input scalings; only conv and dense branches can be added")
            b.add(lay.name, x, y, a_bits, relu=lay.relu)
            align = max(log2[x], log2[y])
            weights[f"{lay.name}.shift_a"] = np.array(align - log2[x], dtype=np.int32)
            weights[f"{lay.name}.shift_b"] = np.array(align - log2[y], dtype=np.int32)
            gain[lay.name] = gain[x]
            log2[lay.name] = out_log2(lay, align, gain[x], lay.relu)
            signed[lay.name] = not lay.relu
        _check_shape(lay, b, cal)
    src_notes = dict(source or {}, method="ptq", w_bits=w_bits, a_bits=a_bits, input_scale=input_scale,
                     calibration_maps=cal.n_maps, notes=list(fg.notes))
    try:
        spec = GraphSpec(name=name, in_h=h, in_w=w, in_channels=c, classes=tuple(classes),
                         graph=tuple(b.layers), in_bits=8, source=src_notes)
    except ValueError as e:
        raise PTQError(f"the quantized graph is not a valid integer model: {e}") from None
    return IntModel(spec, weights, logit_scale_log2=logit_log2)


def float_means(fg: FloatGraph, x_u8: np.ndarray, input_scale: float) -> dict[str, np.ndarray]:
    """Each weighted layer's mean pre-activation a channel, in the integer
    model's units (times the equalization factor where there is one)."""
    layers = [lay for lay in fg.layers if lay.kind in ("conv", "dense")]
    outs = FloatRunner(fg, [lay.tensor for lay in layers], input_scale).run(x_u8)
    means = {}
    for lay in layers:
        v = outs[lay.tensor]
        m = v.mean(axis=tuple(i for i in range(v.ndim) if i != 1)).astype(np.float64)
        means[lay.name] = m * lay.attrs["eq"] if "eq" in lay.attrs else m
    return means


def float_logits(fg: FloatGraph, x_u8: np.ndarray, input_scale: float) -> np.ndarray:
    return FloatRunner(fg, [fg.output], input_scale).run(x_u8)[fg.output].reshape(len(x_u8), -1)


def compare(im: IntModel, ref_logits: np.ndarray, x_u8: np.ndarray, labels=None) -> dict:
    """Argmax agreement of the integer model with the float logits (and both
    accuracies where labels exist)."""
    pred = im.forward(x_u8).argmax(axis=1)
    ref = ref_logits.argmax(axis=1)
    out = {"maps": int(len(x_u8)), "agreement": float(np.mean(pred == ref)) if len(x_u8) else float("nan")}
    if labels is not None and len(labels):
        out["float_accuracy"] = float(np.mean(ref == labels))
        out["int_accuracy"] = float(np.mean(pred == labels))
    return out
