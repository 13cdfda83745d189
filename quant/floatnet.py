"""The FP32 twin of ``GraphNet``: the same layer graph in plain torch.

Its parameters have ``GraphNet``'s names (``ops.<layer>.weight`` and
``.bias``), so ``GraphNet.load_state_dict(fp.state_dict(), strict=False)``
starts quantization-aware training, or post-training quantization, from the
float weights. Requantization points become ReLU (or nothing, for the signed
ones); the input is the same ``q / 256`` as the quantized net's.

With ``bn=True`` every convolution and hidden dense layer is followed by a
batch norm during FP32 training; ``folded()`` then returns the plain twin
with each batch norm folded into its layer's weights and bias (exact in
eval mode), which is what QAT starts from. The accelerator never sees a
batch norm: it is a training aid for the deep, residual nets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fixed_layers(spec) -> dict:
    """name -> set values (``contract.spec.die_decode``) of the layers the spec
    sets instead of learning."""
    return spec.fixed_layers() if hasattr(spec, "fixed_layers") else {}


@torch.no_grad()
def set_fixed(net: nn.Module) -> None:
    for name, fixed in net.fixed.items():
        op = net.ops[name]
        op.weight.copy_(torch.tensor(fixed["weight"], dtype=op.weight.dtype).reshape(op.weight.shape))
        op.bias.copy_(torch.tensor(fixed["bias"], dtype=op.bias.dtype))


def trainable_parameters(net: nn.Module) -> list:
    """Every parameter but those of fixed layers (their weights, and in a
    GraphNet their quantizers' scales): the optimizer never moves those."""
    prefixes = tuple(f"{part}.{name}." for name in net.fixed for part in ("ops", "acts"))
    return [p for n, p in net.named_parameters() if not n.startswith(prefixes)]


INITS = ("he", "torch")


class FloatNet(nn.Module):
    def __init__(self, spec, bn: bool = False, init: str = "he"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
        self.spec = spec
        self.init = init
        self.layers = spec.layers()
        self.ops = nn.ModuleDict()
        self.bns = nn.ModuleDict()
        self.fixed = fixed_layers(spec)
        for layer in self.layers:
            name, kind = layer["name"], layer["type"]
            if kind == "conv2d":
                self.ops[name] = nn.Conv2d(layer["in_c"], layer["out_c"], layer["kernel"],
                                           stride=layer["stride"], padding=layer["pad"],
                                           groups=layer["groups"], bias=True)
            elif kind == "dense":
                self.ops[name] = nn.Linear(layer["in_features"], layer["out_features"], bias=True)
            if layer["name"] in self.fixed:
                continue
            if bn and kind == "conv2d":
                self.bns[name] = nn.BatchNorm2d(layer["out_c"])
            elif bn and kind == "dense" and layer["requant"]:
                self.bns[name] = nn.BatchNorm1d(layer["out_features"])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``he`` (the default): He initialization (fan-in, ReLU gain), zero biases.
        ``torch``: torch's own layer init.

        Without batch norm, torch's init (a gain of about 1/sqrt(3)) shrinks
        the signal layer by layer, so deep nets such as xception_fpn barely
        move for the first epochs; He init keeps the activation variance
        roughly constant through the ReLUs. With batch norms the scale of a
        conv's weights no longer reaches its output, only Adam's step relative
        to it: torch's smaller weights take the larger steps, and on real
        WM-811K they generalize better (wmcnn at 48x48, 60 epochs, two seeds:
        91.6 and 91.5% on held-out maps against 89.1 and 90.3% with He)."""
        for op in self.ops.values():
            if self.init == "torch":
                op.reset_parameters()
            else:
                nn.init.kaiming_normal_(op.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(op.bias)
        set_fixed(self)

    def trainable_parameters(self) -> list:
        return trainable_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x)[self.layers[-1]["name"]]

    @torch.no_grad()
    def folded(self) -> "FloatNet":
        """The twin without batch norms: w' = w * s, b' = (b - mean) * s + beta,
        s = gamma / sqrt(var + eps), per output channel (eval-mode statistics)."""
        plain = FloatNet(self.spec)
        state = {k: v.clone() for k, v in self.state_dict().items() if k.startswith("ops.")}
        for name, bn in self.bns.items():
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = state[f"ops.{name}.weight"]
            state[f"ops.{name}.weight"] = w * s.reshape(-1, *([1] * (w.ndim - 1)))
            state[f"ops.{name}.bias"] = (state[f"ops.{name}.bias"] - bn.running_mean) * s + bn.bias
        plain.load_state_dict(state)
        return plain.eval()

    def trace(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"input": x}
        for layer in self.layers:
            y = self._op(layer, [out[i] for i in layer["inputs"]])
            out[layer["name"]] = F.relu(y) if layer["requant"] and layer["relu"] else y
            if layer["name"] in self.fixed:
                # Saturate where the quantized twin's set scale does, so both agree.
                top = self.fixed[layer["name"]]["act_scale"] * (2 ** layer["out_bits"] - 1)
                out[layer["name"]] = out[layer["name"]].clamp(max=top)
        return out

    def _op(self, layer: dict, xs: list[torch.Tensor]) -> torch.Tensor:
        kind, x = layer["type"], xs[0]
        name = layer["name"]
        if kind == "conv2d":
            y = self.ops[name](x)
            return self.bns[name](y) if name in self.bns else y
        if kind == "dense":
            y = self.ops[name](torch.flatten(x, 1))
            return self.bns[name](y) if name in self.bns else y
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
