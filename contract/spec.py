"""Model topology as plain data: the one description that the Brevitas model,
the integer model, the HLS generator and the tests all build from.

Torch-free on purpose: the board service and the host read it too.

A wafer-map CNN is ``len(channels)`` blocks of conv3x3(pad 1) -> ReLU-quant
(``block_convs[i]`` of them in block i, one by default) -> maxpool 2x2, then
one dense layer to ``n_classes`` logits. Activations are in
HWC order inside the integer model and the accelerator.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from contract.graph import GraphBuilder

WAFER_CLASSES = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc",
                 "Near-full", "Random", "Scratch", "none")

INPUT_BITS = 8
# The input code q is the pixel value x = q * 2**INPUT_SCALE_LOG2, so x is in [0, 1).
INPUT_SCALE_LOG2 = -8


# The die decoder: a 1x1 convolution with set weights in front of the first
# learned layer. A linear layer on the gray codes 0 / 128 / 255 can only weigh
# a failing die as a fixed multiple of a passing one; two saturating channels,
# any die = min(relu(x - 1/4), top) and failing die = min(relu(x - 3/4), top),
# let the next layer weigh pass and fail independently, as one-hot channels
# would, while the wire still carries one channel (PACK_DIE2 included). Its
# scales are set too (weights 1, outputs 1/16 a code, 2 bits), so every die
# state gives exactly code 0 or 3 in both channels, in the float twin as in the
# integer model (tests/test_die_channels.py).
DECODE_LAYER = "decode"
DECODE_BITS = 2


def die_decode() -> dict:
    """The die decoder's set values, on inputs x = q / 256: ``weight`` [2][1][1][1],
    ``bias`` [2], the power-of-two ``weight_scale`` and ``act_scale``."""
    return {"weight": [[[[1.0]]], [[[1.0]]]], "bias": [-0.25, -0.75],
            "weight_scale": 1.0, "act_scale": 2.0 ** -4}


class SpecFace:
    """What every family's spec offers besides ``layers()`` (a dataclass mixin)."""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _bits_tag(bits: tuple) -> str:
    return "x" if len(set(bits)) > 1 else str(bits[0])


@dataclass(frozen=True)
class CNNSpec(SpecFace):
    """Topology and bit widths of a wafer-map CNN.

    ``w_bits`` has one entry per weighted layer (each conv, then the dense);
    ``a_bits`` one per conv (the ReLU-quant after it). Block i's first conv
    is ``conv{i}``, its further ones ``conv{i}_1``, ``conv{i}_2``.
    """

    name: str = "wmcnn"
    family: str = "wmcnn"
    in_size: int = 42
    in_channels: int = 1
    channels: tuple[int, ...] = (8, 16, 32)
    w_bits: tuple[int, ...] = (4, 4, 4, 4)
    a_bits: tuple[int, ...] = (4, 4, 4)
    classes: tuple[str, ...] = field(default=WAFER_CLASSES)
    # A fixed first layer that turns the one gray channel into two die channels
    # (see ``die_decode``): on real maps it was worth two points of accuracy.
    die_channels: bool = False
    # conv3x3 layers in each block; empty: one each. Real maps: a second conv
    # in the two deepest blocks (1, 1, 2, 2) is the 4-bit recipe's
    # (docs/REAL_MAPS.md, "Two convs in the deeper blocks").
    block_convs: tuple[int, ...] = ()

    def __post_init__(self):
        if self.block_convs and (len(self.block_convs) != len(self.channels)
                                 or min(self.block_convs) < 1):
            raise ValueError(f"block_convs needs {len(self.channels)} counts of at least 1, "
                             f"got {self.block_convs}")
        n = self.n_convs(self.channels, self.block_convs)
        if len(self.w_bits) != n + 1:
            raise ValueError(f"w_bits needs {n + 1} entries, got {len(self.w_bits)}")
        if len(self.a_bits) != n:
            raise ValueError(f"a_bits needs {n} entries, got {len(self.a_bits)}")
        for b in (*self.w_bits, *self.a_bits):
            if not 2 <= b <= 8:
                raise ValueError(f"bit widths must be 2..8, got {b}")
        if self.in_size >> len(self.channels) < 1:
            raise ValueError(f"{self.in_size}x{self.in_size} is too small for {len(self.channels)} pools")

    @staticmethod
    def n_convs(channels, block_convs=()) -> int:
        """How many conv layers (and so activation widths) the blocks hold."""
        return sum(block_convs) if block_convs else len(channels)

    @classmethod
    def uniform(cls, w: int, a: int, **kw) -> "CNNSpec":
        return cls.with_bits(w, a, **kw)

    @classmethod
    def with_bits(cls, w, a, **kw) -> "CNNSpec":
        """``w`` and ``a``: one width for every layer or one per layer; the
        name gives the width, or ``x`` where the layers differ
        (``wmcnn_xw2a``: mixed weights, 2-bit activations)."""
        n = cls.n_convs(kw.get("channels", cls.channels), kw.get("block_convs") or ())
        w = (w,) * (n + 1) if isinstance(w, int) else tuple(w)
        a = (a,) * n if isinstance(a, int) else tuple(a)
        name = kw.pop("name", "wmcnn")
        return cls(name=f"{name}_{_bits_tag(w)}w{_bits_tag(a)}a", w_bits=w, a_bits=a, **kw)

    def layers(self) -> list[dict]:
        """The layer graph (``contract.graph``), in execution order."""
        g = GraphBuilder(self.in_size, self.in_channels, INPUT_BITS)
        if self.die_channels:
            g.conv(DECODE_LAYER, 2, 1, w_bits=DECODE_BITS, a_bits=DECODE_BITS)
        k = 0
        for i, c_out in enumerate(self.channels):
            for r in range(self.block_convs[i] if self.block_convs else 1):
                g.conv(f"conv{i}_{r}" if r else f"conv{i}", c_out, 3,
                       w_bits=self.w_bits[k], a_bits=self.a_bits[k])
                k += 1
            g.maxpool(f"pool{i}", 2)
        g.dense("fc", self.n_classes, w_bits=self.w_bits[-1], logits=True)
        return g.layers

    def fixed_layers(self) -> dict:
        """Layers whose weights are set, not learned: name -> (weight, bias)."""
        return {DECODE_LAYER: die_decode()} if self.die_channels else {}


def input_shape(spec) -> tuple[int, int, int]:
    """(H, W, C) of any family's input; only imported graphs may be non-square."""
    h = getattr(spec, "in_h", None) or spec.in_size
    return (h, getattr(spec, "in_w", None) or h, spec.in_channels)


def input_bits(spec) -> int:
    """Width of the input codes: 8 (pixels) unless an imported graph says less."""
    return getattr(spec, "in_bits", INPUT_BITS)


def spec_from_dict(d: dict):
    """Any family's spec from its ``to_dict()`` (the ``spec`` entry of model.json)."""
    from contract import zoo

    family = d.get("family", "wmcnn")
    if family == "wmcnn":
        return CNNSpec.from_dict(d)
    if family == "graph":
        from contract.graphspec import GraphSpec

        return GraphSpec.from_dict(d)
    if family not in zoo.FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: wmcnn, {', '.join(zoo.FAMILIES)}")
    return zoo.FAMILIES[family].from_dict(d)
