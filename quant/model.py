"""Brevitas networks built from a spec's layer graph (``contract.graph``).

Every scale is a power of two (the ``*FixedPoint`` quantizers), and the biases
are int32 at the accumulator's scale, so the model is integer-exact: its
float output equals ``IntModel`` logits times ``2**logit_scale_log2`` exactly.

Input: float NCHW [N][1][H][W] holding ``q / 256`` for uint8 codes ``q``; the
input quantizer has a constant scale of 2**-8, so it reproduces ``q`` exactly.
"""
from __future__ import annotations

import math

import brevitas.nn as qnn
import torch
import torch.nn.functional as F
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8ActPerTensorFixedPointMSE,
                            Int8WeightPerTensorFixedPoint, Int8WeightPerTensorFixedPointMSE, Int32Bias,
                            Uint8ActPerTensorFixedPoint, Uint8ActPerTensorFixedPointMSE)
from brevitas.quant_tensor import IntQuantTensor
from torch import nn

from contract.spec import INPUT_BITS, INPUT_SCALE_LOG2
from quant.floatnet import fixed_layers, set_fixed, trainable_parameters


class InputQuant(Uint8ActPerTensorFixedPoint):
    """uint8 input with the constant scale 2**INPUT_SCALE_LOG2.

    The fixed-point quantizers divide the threshold by 2**bit_width, so a
    threshold of 2**(INPUT_SCALE_LOG2 + INPUT_BITS) = 1.0 gives that scale."""

    bit_width = INPUT_BITS
    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 2.0 ** (INPUT_SCALE_LOG2 + INPUT_BITS)
    min_val = 0.0
    max_val = 1.0


def weight_quant(bits: int):
    """Signed weights, one learned power-of-two scale a tensor.

    Narrow range (codes -(2**(b-1) - 1) .. 2**(b-1) - 1, symmetric) from 3
    bits up; at 2 bits the full two's-complement range -2..1, because narrow
    range there is ternary and wastes a quarter of the codes (mobilenet_s
    W2A2 from the same FP32 net: 94.4% narrow, 96.4% full). The integer model
    and the accelerator take any code an ap_int<b> holds.

    The scale starts where it minimizes the weights' quantization MSE (on the
    first forward pass, so after the float weights are loaded) and is then
    learned. The max-based scale would never clip: at 4 bits and below most
    weights of a batch-norm-folded layer would round to zero (xception_fpn
    W4A4 from the same FP32 net: 95.5% with it, 97.8% with this one)."""
    return type(f"Int{bits}WeightPerTensorFixedPointMSE", (Int8WeightPerTensorFixedPointMSE,),
                {"bit_width": bits, "narrow_range": bits > 2})


# How activation scales start (both then become learned parameters with the
# same state-dict entries, so a checkpoint loads whichever way it started):
# "stats" from a high percentile of the calibration activations, "mse" where
# the activations' quantization MSE is least. At 2 bits the percentile scale
# leaves most activations at code 0 (mobilenet_s W2A2, 60 QAT epochs: 93.1%
# from "stats", 95.1% from "mse").
ACT_INITS = ("stats", "mse")


def act_quant(bits: int, init: str = "stats"):
    base = Uint8ActPerTensorFixedPointMSE if init == "mse" else Uint8ActPerTensorFixedPoint
    return type(f"Uint{bits}ActPerTensorFixedPoint_{init}", (base,), {"bit_width": bits})


def signed_act_quant(bits: int, init: str = "stats"):
    base = Int8ActPerTensorFixedPointMSE if init == "mse" else Int8ActPerTensorFixedPoint
    return type(f"Int{bits}ActPerTensorFixedPoint_{init}", (base,), {"bit_width": bits})


def const_weight_quant(bits: int, scale: float):
    """Signed weights at a set power-of-two scale (a fixed layer's)."""
    return type(f"Int{bits}WeightConst", (Int8WeightPerTensorFixedPoint,),
                {"bit_width": bits, "narrow_range": False, "scaling_impl_type": ScalingImplType.CONST,
                 "scaling_const": scale * 2 ** (bits - 1)})


def const_act_quant(bits: int, scale: float):
    """Unsigned activations at a set power-of-two scale (a fixed layer's)."""
    return type(f"Uint{bits}ActConst", (Uint8ActPerTensorFixedPoint,),
                {"bit_width": bits, "scaling_impl_type": ScalingImplType.CONST,
                 "scaling_const": scale * 2 ** bits, "min_val": 0.0, "max_val": scale * (2 ** bits - 1)})


def _rewrap(qt: IntQuantTensor, value: torch.Tensor, extra_bits: int = 0) -> IntQuantTensor:
    """The same scale on new values: exact for max, repeat and sums of codes."""
    return IntQuantTensor(value, qt.scale, qt.zero_point, qt.bit_width + extra_bits, qt.signed,
                          qt.training)


class GraphNet(nn.Module):
    """A Brevitas network built from a spec's layer graph (``contract.graph``).

    Input: float NCHW holding ``q / 256`` for uint8 codes ``q``. Output: float
    logits, equal to the integer model's logits times their power-of-two scale.
    """

    def __init__(self, spec, act_init: str = "stats"):
        super().__init__()
        if act_init not in ACT_INITS:
            raise ValueError(f"unknown activation-scale init {act_init!r}; choose from {', '.join(ACT_INITS)}")
        self.spec = spec
        self.layers = spec.layers()
        self.inp = qnn.QuantIdentity(act_quant=InputQuant, return_quant_tensor=True)
        self.ops = nn.ModuleDict()
        self.acts = nn.ModuleDict()
        self.aligns = nn.ModuleDict()
        self.fixed = fixed_layers(spec)
        for layer in self.layers:
            name, kind = layer["name"], layer["type"]
            fixed = self.fixed.get(name)
            if kind == "conv2d":
                wq = (const_weight_quant(layer["w_bits"], fixed["weight_scale"]) if fixed
                      else weight_quant(layer["w_bits"]))
                self.ops[name] = qnn.QuantConv2d(
                    layer["in_c"], layer["out_c"], layer["kernel"], stride=layer["stride"],
                    padding=layer["pad"], groups=layer["groups"], bias=True,
                    weight_quant=wq, bias_quant=Int32Bias, return_quant_tensor=True)
            elif kind == "dense":
                self.ops[name] = qnn.QuantLinear(
                    layer["in_features"], layer["out_features"], bias=True,
                    weight_quant=weight_quant(layer["w_bits"]), bias_quant=Int32Bias,
                    return_quant_tensor=layer["requant"])
            if kind == "add":
                # One quantizer for both branches: the sum is then exact at its scale.
                self.aligns[name] = qnn.QuantIdentity(act_quant=signed_act_quant(layer["align_bits"], act_init),
                                                      return_quant_tensor=True)
            if layer["requant"]:
                if fixed:
                    self.acts[name] = qnn.QuantReLU(act_quant=const_act_quant(layer["out_bits"],
                                                                              fixed["act_scale"]),
                                                    return_quant_tensor=True)
                elif layer["relu"]:
                    self.acts[name] = qnn.QuantReLU(act_quant=act_quant(layer["out_bits"], act_init),
                                                    return_quant_tensor=True)
                else:
                    self.acts[name] = qnn.QuantIdentity(act_quant=signed_act_quant(layer["out_bits"], act_init),
                                                        return_quant_tensor=True)

        set_fixed(self)

    def trainable_parameters(self) -> list:
        return trainable_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x)[self.layers[-1]["name"]]

    def trace(self, x: torch.Tensor) -> dict[str, object]:
        """Every layer's output by name; ``<name>.acc`` is its accumulator
        before requantization. The export reads the scales here."""
        out = {"input": self.inp(x)}
        for layer in self.layers:
            name = layer["name"]
            acc = self._op(layer, [out[i] for i in layer["inputs"]])
            out[f"{name}.acc"] = acc
            out[name] = self.acts[name](acc) if name in self.acts else acc
        return out

    def _op(self, layer: dict, xs: list):
        kind, x = layer["type"], xs[0]
        if kind == "conv2d":
            return self.ops[layer["name"]](x)
        if kind == "dense":
            # The integer model flattens HWC; Brevitas flattens CHW. The export
            # permutes the weights, so here the plain torch flatten is right.
            return self.ops[layer["name"]](_rewrap(x, torch.flatten(x.value, 1)))
        if kind == "maxpool":
            return _rewrap(x, F.max_pool2d(x.value, layer["pool"], layer["stride"]))
        if kind == "gap":
            hw, k = layer["in_h"] * layer["in_w"], layer["sum_shift"]
            total = x.value.sum(dim=(2, 3), keepdim=True) * 2.0 ** -k
            return IntQuantTensor(total, x.scale * 2.0 ** -k, x.zero_point,
                                  x.bit_width + math.ceil(math.log2(hw)), x.signed, x.training)
        if kind == "add":
            align = self.aligns[layer["name"]]
            a, b = align(xs[0]), align(xs[1])
            return _rewrap(a, a.value + b.value, 1)
        if kind == "upsample":
            return _rewrap(x, F.interpolate(x.value, scale_factor=2, mode="nearest"))
        if kind == "quant":
            return x
        raise ValueError(f"layer {layer['name']}: unknown type {kind!r}")


def to_input(images_u8) -> torch.Tensor:
    """uint8 [N][H][W] or [N][H][W][1] codes -> float NCHW model input q/256."""
    t = torch.as_tensor(images_u8)
    if t.ndim == 4:
        t = t[..., 0]
    return t.unsqueeze(1).to(torch.float32) * (2.0 ** INPUT_SCALE_LOG2)
