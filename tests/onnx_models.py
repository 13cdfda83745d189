"""Brevitas models exported to QONNX/QCDQ for the importer's tests: the
bnn_pynq LFC/TFC/CNV topologies from brevitas_examples (random weights, batch
norm statistics randomised so that channels flip sign and thresholds move;
nothing downloaded) and a few small models for the paths bnn_pynq does not
take (non-square multi-channel input, CHW flatten, ReLU with padding) or that
must be refused."""
from __future__ import annotations


import torch
from torch import nn

BNN_PYNQ = ["lfc_1w1a", "lfc_1w2a", "lfc_2w2a", "tfc_1w1a", "tfc_1w2a", "tfc_2w2a",
            "cnv_1w1a", "cnv_1w2a", "cnv_2w2a"]


def _randomise(model: nn.Module, shape, seed: int) -> None:
    """Weights uniform in [-1, 1] (as bnn_pynq initialises them), batch norm
    statistics taken from a batch of random inputs (so that activations spread
    over their codes instead of sticking at one), then random batch norm
    scales, about half of them negative, and shifts."""
    g = torch.Generator().manual_seed(seed)
    norms = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) * 2 - 1)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) or type(m).__name__ == "TensorNorm":
            m.momentum = 1.0
            norms.append(m)
    model.train()
    with torch.no_grad():
        model(torch.rand((32,) + tuple(shape[1:]), generator=g))
    model.eval()
    for m in norms:
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
        else:
            m.weight.data.fill_(0.5 + float(torch.rand(1, generator=g)))
            m.bias.data.fill_(float(torch.randn(1, generator=g)))


def bnn_pynq(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """The brevitas_examples.bnn_pynq model ``name`` (lfc_2w2a, which has no cfg
    file, is LFC's topology with TFC 2w2a's bit widths)."""
    from brevitas_examples.bnn_pynq.models import get_model_cfg, model_impl

    torch.manual_seed(seed)
    if name == "lfc_2w2a":
        cfg = get_model_cfg("lfc_1w2a")
        cfg.set("QUANT", "WEIGHT_BIT_WIDTH", "2")
    else:
        cfg = get_model_cfg(name)
    model = model_impl[cfg.get("MODEL", "ARCH")](cfg)
    shape = (1, 3, 32, 32) if name.startswith("cnv") else (1, 1, 28, 28)
    _randomise(model, shape, seed)
    return model, shape


def export(model: nn.Module, shape, path, qcdq: bool = False) -> None:
    from brevitas.export import export_onnx_qcdq, export_qonnx

    x = torch.rand(shape)
    with torch.no_grad():
        if qcdq:
            export_onnx_qcdq(model, x, export_path=str(path), dynamo=False)
        else:
            export_qonnx(model, x, export_path=str(path), dynamo=False)


class Small(nn.Module):
    """8-bit input quantizer, conv (no pad) -> BN -> 2-bit act -> maxpool,
    conv -> BN -> ReLU 2-bit, conv with a float bias and zero padding (after unsigned codes)
    -> BN -> ReLU 3-bit,
    flatten (CHW) -> dense logits. ``variant`` adds what must be refused."""

    def __init__(self, in_ch=2, w_bits=2, variant="ok", pad_second=1):
        super().__init__()
        from brevitas.core.restrict_val import RestrictValueType
        from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
        from brevitas_examples.bnn_pynq.models.common import CommonActQuant, CommonWeightQuant

        wq = dict(weight_quant=CommonWeightQuant, weight_bit_width=w_bits, bias=False)
        self.variant = variant
        self.inp = QuantIdentity(act_quant=CommonActQuant, bit_width=8, min_val=-1.0,
                                 max_val=1.0 - 2.0 ** -7, narrow_range=False,
                                 restrict_scaling_type=RestrictValueType.POWER_OF_TWO)
        self.c1 = QuantConv2d(in_ch, 4, 3, padding=1 if variant == "pad_offset" else 0, **wq)
        self.b1 = nn.BatchNorm2d(4)
        self.a1 = QuantIdentity(act_quant=CommonActQuant, bit_width=2)
        self.pool = nn.MaxPool2d(2)
        self.c2 = QuantConv2d(4, 5, 3, padding=0, **wq)
        self.b2 = nn.BatchNorm2d(5)
        self.a2 = QuantReLU(bit_width=2)
        self.c3 = QuantConv2d(5, 5, 3, padding=pad_second, **{**wq, "bias": True})   # a float bias
        self.b3 = nn.BatchNorm2d(5)
        self.a3 = QuantReLU(bit_width=3)
        if variant == "residual":
            # power-of-two scales: the add layer aligns them with shifts
            from brevitas.quant import Uint8ActPerTensorFixedPoint as Fixed
            self.a2 = QuantReLU(act_quant=Fixed, bit_width=2)
            self.a3 = QuantReLU(act_quant=Fixed, bit_width=3)
            self.a4 = QuantReLU(act_quant=Fixed, bit_width=4)
        self.fc = None          # sized by small() from the features' shape

    def features(self, x):
        x = self.inp(2.0 * x - 1.0)
        x = self.pool(self.a1(self.b1(self.c1(x))))
        x = self.a2(self.b2(self.c2(x)))
        y = self.a3(self.b3(self.c3(x)))
        if self.variant in ("residual", "residual_float"):
            y = y + x
        if self.variant == "residual":
            y = self.a4(y)
        if self.variant == "sigmoid":
            y = torch.sigmoid(y)
        if self.variant in ("gap", "gap_quant"):
            y = nn.functional.adaptive_avg_pool2d(y, 1)
        if self.variant == "gap_quant":
            y = self.a1(y)
        return y.flatten(1)

    def forward(self, x):
        return self.fc(self.features(x)) * 0.25


def small(variant="ok", seed=0, in_ch=2, hw=(12, 20)) -> tuple[nn.Module, tuple[int, ...]]:
    """Input 12x20 (non-square): conv 10x18, pool 5x9, conv 3x7, conv (pad 1) 3x7: the
    flatten has H, W > 1 and C > 1, so the dense weights must be permuted CHW -> HWC."""
    from brevitas.nn import QuantLinear
    from brevitas_examples.bnn_pynq.models.common import CommonWeightQuant

    torch.manual_seed(seed)
    model = Small(in_ch, variant=variant)
    model.eval()
    with torch.no_grad():
        n = model.features(torch.rand((1, in_ch) + hw)).shape[1]
    model.fc = QuantLinear(n, 7, weight_quant=CommonWeightQuant, weight_bit_width=2, bias=False)
    _randomise(model, (1, in_ch) + hw, seed)
    return model, (1, in_ch) + hw
