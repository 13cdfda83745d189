"""Cross-layer equalization of a float net before quantization.

Per-tensor scales (all the accelerator has: one power-of-two shift a layer)
fit a layer badly when its output channels have very different weight
ranges, which is what batch-norm folding leaves in depthwise convolutions:
at 4 bits the small channels round to zero. For two layers A -> B where B
alone reads A's output through operations that commute with a positive
per-channel factor (ReLU, max-pool, global average pooling, nothing),
dividing A's output channel c by ``s_c`` and multiplying B's input channel c
by ``s_c`` leaves the net's function unchanged. With
``s_c = sqrt(r_A[c] / r_B[c])`` (r: the largest absolute weight of that
channel) both layers end up with the range ``sqrt(r_A[c] * r_B[c])`` in
channel c (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", 2019).

Works on ``FloatNet`` (without batch norms: fold them first); the result has
the same parameter names, so QAT starts from it as from any float net.
"""
from __future__ import annotations

import torch

from quant.floatnet import FloatNet

# Between A and B only these may sit: each commutes with a positive per-channel factor.
_PASS = ("maxpool", "gap")


def pairs(layers: list[dict]) -> list[tuple[str, str]]:
    """(A, B) names of weighted layers where B is A's only consumer, directly
    or through max-pools / GAP that only B reads."""
    consumers: dict[str, list[str]] = {}
    for l in layers:
        for i in l["inputs"]:
            consumers.setdefault(i, []).append(l["name"])
    by_name = {l["name"]: l for l in layers}
    out = []
    for a in layers:
        if a["type"] not in ("conv2d", "dense") or not a["requant"]:
            continue
        cur = a["name"]
        while True:
            nxt = consumers.get(cur, [])
            if len(nxt) != 1:
                break
            b = by_name[nxt[0]]
            if b["type"] in _PASS:
                cur = b["name"]
                continue
            if b["type"] in ("conv2d", "dense"):
                out.append((a["name"], b["name"]))
            break
    return out


def _in_channel_view(layer: dict, w: torch.Tensor, channels: int) -> torch.Tensor:
    """B's weights as [channels][rest]: the weights that read each input channel."""
    if layer["type"] == "dense":
        # torch flattens C, H, W: channel c owns a contiguous block of H*W inputs.
        return w.reshape(w.shape[0], channels, -1).transpose(0, 1).reshape(channels, -1)
    if layer["groups"] != 1:          # depthwise: input channel c is output channel c
        return w.reshape(channels, -1)
    return w.transpose(0, 1).reshape(channels, -1)


def _scale_in(layer: dict, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    c = s.numel()
    if layer["type"] == "dense":
        return (w.reshape(w.shape[0], c, -1) * s[None, :, None]).reshape(w.shape)
    if layer["groups"] != 1:
        return w * s.reshape(-1, *([1] * (w.ndim - 1)))
    return w * s.reshape(1, -1, *([1] * (w.ndim - 2)))


@torch.no_grad()
def equalize(fp: FloatNet, iterations: int = 4, eps: float = 1e-8) -> FloatNet:
    """A copy of ``fp`` with every pair of ``pairs`` equalized, ``iterations`` sweeps."""
    if len(fp.bns):
        raise ValueError("equalize a net without batch norms: fold them first (FloatNet.folded)")
    net = FloatNet(fp.spec)
    net.load_state_dict(fp.state_dict())
    layers = {l["name"]: l for l in net.layers}
    todo = pairs(net.layers)
    for _ in range(iterations):
        for a, b in todo:
            wa, ba = net.ops[a].weight, net.ops[a].bias
            wb = net.ops[b].weight
            c = wa.shape[0]
            ra = wa.reshape(c, -1).abs().amax(1)
            rb = _in_channel_view(layers[b], wb, c).abs().amax(1)
            s = torch.where((ra > eps) & (rb > eps), torch.sqrt(ra / rb.clamp_min(eps)), torch.ones_like(ra))
            wa.div_(s.reshape(-1, *([1] * (wa.ndim - 1))))
            ba.div_(s)
            wb.copy_(_scale_in(layers[b], wb, s))
    return net.eval()
