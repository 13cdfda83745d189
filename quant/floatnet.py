"""The FP32 twin of ``GraphNet``: the same layer graph in plain torch.

Its parameters have ``GraphNet``'s names (``ops.<layer>.weight`` and
``.bias``), so ``GraphNet.load_state_dict(fp.state_dict(), strict=False)``
starts quantization-aware training, or post-training quantization, from the
float weights. Requantization points become ReLU (or nothing, for the signed
ones); the input is the same ``q / 256`` as the quantized net's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FloatNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.layers = spec.layers()
        self.ops = nn.ModuleDict()
        for layer in self.layers:
            name, kind = layer["name"], layer["type"]
            if kind == "conv2d":
                self.ops[name] = nn.Conv2d(layer["in_c"], layer["out_c"], layer["kernel"],
                                           stride=layer["stride"], padding=layer["pad"],
                                           groups=layer["groups"], bias=True)
            elif kind == "dense":
                self.ops[name] = nn.Linear(layer["in_features"], layer["out_features"], bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialization (fan-in, ReLU gain), zero biases.

        There is no batch norm, and torch's default init (a gain of about
        1/sqrt(3)) shrinks the signal layer by layer, so deep nets such as
        xception_fpn barely move for the first epochs; He init keeps the
        activation variance roughly constant through the ReLUs."""
        for op in self.ops.values():
            nn.init.kaiming_normal_(op.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(op.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x)[self.layers[-1]["name"]]

    def trace(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"input": x}
        for layer in self.layers:
            y = self._op(layer, [out[i] for i in layer["inputs"]])
            out[layer["name"]] = F.relu(y) if layer["requant"] and layer["relu"] else y
        return out

    def _op(self, layer: dict, xs: list[torch.Tensor]) -> torch.Tensor:
        kind, x = layer["type"], xs[0]
        if kind == "conv2d":
            return self.ops[layer["name"]](x)
        if kind == "dense":
            return self.ops[layer["name"]](torch.flatten(x, 1))
        if kind == "maxpool":
            return F.max_pool2d(x, layer["pool"], layer["stride"])
        if kind == "gap":
            return x.sum(dim=(2, 3), keepdim=True) * 2.0 ** -layer["sum_shift"]
        if kind == "add":
            return x + xs[1]
        if kind == "upsample":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if kind == "quant":
            return x
        raise ValueError(f"layer {layer['name']}: unknown type {kind!r}")
