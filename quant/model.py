"""Brevitas wafer-map CNN built from a ``CNNSpec``.

Every scale is a power of two (the ``*FixedPoint`` quantizers), and the biases
are int32 at the accumulator's scale, so the model is integer-exact: its
float output equals ``IntModel`` logits times ``2**logit_scale_log2`` exactly.

Input: float NCHW [N][1][H][W] holding ``q / 256`` for uint8 codes ``q``; the
input quantizer has a constant scale of 2**-8, so it reproduces ``q`` exactly.
"""
from __future__ import annotations

import brevitas.nn as qnn
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import Int8WeightPerTensorFixedPoint, Int32Bias, Uint8ActPerTensorFixedPoint
from torch import nn

from quant.spec import INPUT_BITS, INPUT_SCALE_LOG2, CNNSpec


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
    return type(f"Int{bits}WeightPerTensorFixedPoint", (Int8WeightPerTensorFixedPoint,),
                {"bit_width": bits})


def act_quant(bits: int):
    return type(f"Uint{bits}ActPerTensorFixedPoint", (Uint8ActPerTensorFixedPoint,),
                {"bit_width": bits})


class WaferCNN(nn.Module):
    def __init__(self, spec: CNNSpec):
        super().__init__()
        self.spec = spec
        self.inp = qnn.QuantIdentity(act_quant=InputQuant, return_quant_tensor=True)
        self.convs = nn.ModuleList()
        self.acts = nn.ModuleList()
        c_in = spec.in_channels
        for i, c_out in enumerate(spec.channels):
            self.convs.append(qnn.QuantConv2d(c_in, c_out, 3, padding=1, bias=True,
                                              weight_quant=weight_quant(spec.w_bits[i]),
                                              bias_quant=Int32Bias, return_quant_tensor=True))
            self.acts.append(qnn.QuantReLU(act_quant=act_quant(spec.a_bits[i]),
                                           return_quant_tensor=True))
            c_in = c_out
        self.pool = nn.MaxPool2d(2)
        side = spec.in_size >> len(spec.channels)
        self.fc = qnn.QuantLinear(c_in * side * side, spec.n_classes, bias=True,
                                  weight_quant=weight_quant(spec.w_bits[-1]),
                                  bias_quant=Int32Bias, return_quant_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x)[-1][1]

    def trace(self, x: torch.Tensor) -> list[tuple[str, object]]:
        """Every intermediate (name, QuantTensor) in order; the export reads scales here."""
        out = [("input", self.inp(x))]
        y = out[-1][1]
        for i, (conv, act) in enumerate(zip(self.convs, self.acts)):
            y = conv(y)
            out.append((f"conv{i}.acc", y))
            y = act(y)
            out.append((f"conv{i}", y))
            y = self.pool(y)
            out.append((f"pool{i}", y))
        y = torch.flatten(y, 1)
        out.append(("fc", self.fc(y)))
        return out


def to_input(images_u8) -> torch.Tensor:
    """uint8 [N][H][W] or [N][H][W][1] codes -> float NCHW model input q/256."""
    t = torch.as_tensor(images_u8)
    if t.ndim == 4:
        t = t[..., 0]
    return t.unsqueeze(1).to(torch.float32) * (2.0 ** INPUT_SCALE_LOG2)
