"""Model families beyond the slice's wafer-map CNN (``contract.spec.CNNSpec``).

Each family is a ``ZooSpec`` with the same face as ``CNNSpec`` (``name``,
``family``, ``in_size``, ``in_channels``, ``classes``, ``n_classes``,
``to_dict()``, ``from_dict()``, ``layers()``); its topology is a constant
function of the spec, written with ``contract.graph.GraphBuilder``.

Bit widths are set per layer: ``w_bits`` and ``a_bits`` are one number for
every layer, or a tuple with one entry per weighted layer (``w_bits``) or per
requantizing layer (``a_bits``), in execution order.

- ``vgg_s``: the simplified VGG of the platform paper (conv3x3 pairs and
  max-pools, two dense layers).
- ``mobilenet_s``: MobileNetV1-style depthwise-separable blocks with stride-2
  downsampling, global average pooling and a linear head.
- ``alexnet_s``: a small AlexNet: a 5x5 stem, three 3x3 convs, two dense layers.
- ``xception_fpn``: the buffer-zone net of seed 000, cut down for the XC7Z020:
  an entry flow, one middle flow (three separable convs around a residual
  add), an FPN top-down merge, global average pooling and a linear head, so
  that class activation maps work on ``cam`` (the last feature map).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from contract.graph import GraphBuilder
from contract.spec import INPUT_BITS, WAFER_CLASSES, SpecFace

BUFFER_CLASSES = ("Crack", "EMC", "Normal", "Notch")


class _Bits:
    """Hands out per-layer bit widths in execution order."""

    def __init__(self, w, a):
        self.w, self.a, self.iw, self.ia = w, a, 0, 0

    def _next(self, spec, i):
        if isinstance(spec, int):
            return spec
        if i >= len(spec):
            raise ValueError(f"bit-width tuple {spec} has too few entries for this topology")
        return spec[i]

    def wb(self) -> int:
        self.iw += 1
        return self._next(self.w, self.iw - 1)

    def ab(self) -> int:
        self.ia += 1
        return self._next(self.a, self.ia - 1)


@dataclass(frozen=True)
class ZooSpec(SpecFace):
    family: str
    name: str = ""
    in_size: int = 42
    in_channels: int = 1
    w_bits: int | tuple[int, ...] = 4
    a_bits: int | tuple[int, ...] = 4
    width: int = 16           # channels of the first stage; later stages scale from it
    classes: tuple[str, ...] = field(default=WAFER_CLASSES)
    kind: str = ""            # layer_top only: the layer kind under test (LAYER_TOPS)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; known: {', '.join(FAMILIES)}")
        for b in (self.w_bits, self.a_bits):
            for v in (b,) if isinstance(b, int) else b:
                if not 2 <= v <= 8:
                    raise ValueError(f"bit widths must be 2..8, got {v}")
        if not self.name:
            w = self.w_bits if isinstance(self.w_bits, int) else "x"
            a = self.a_bits if isinstance(self.a_bits, int) else "x"
            base = f"top_{self.kind}" if self.family == "layer_top" else self.family
            object.__setattr__(self, "name", f"{base}_{w}w{a}a")

    def layers(self) -> list[dict]:
        g = GraphBuilder(self.in_size, self.in_channels, INPUT_BITS)
        if self.family == "layer_top":
            _layer_top(g, _Bits(self.w_bits, self.a_bits), self.width, self.n_classes, self.kind)
        else:
            _BUILDERS[self.family](g, _Bits(self.w_bits, self.a_bits), self.width, self.n_classes)
        return g.layers


def _vgg_s(g: GraphBuilder, b: _Bits, c: int, n: int) -> None:
    for i, (ch, reps) in enumerate(((c, 2), (2 * c, 2), (4 * c, 1))):
        for r in range(reps):
            g.conv(f"conv{i}_{r}", ch, 3, w_bits=b.wb(), a_bits=b.ab())
        g.maxpool(f"pool{i}", 2)
    g.dense("fc0", 8 * c, w_bits=b.wb(), a_bits=b.ab())
    g.dense("fc", n, w_bits=b.wb(), logits=True)


def _mobilenet_s(g: GraphBuilder, b: _Bits, c: int, n: int) -> None:
    g.conv("stem", c, 3, stride=2, w_bits=b.wb(), a_bits=b.ab())
    for i, (ch, stride) in enumerate(((2 * c, 1), (4 * c, 2), (4 * c, 1), (8 * c, 2))):
        g.dwconv(f"dw{i}", 3, stride, w_bits=b.wb(), a_bits=b.ab())
        g.conv(f"pw{i}", ch, 1, w_bits=b.wb(), a_bits=b.ab())
    g.gap("gap", a_bits=b.ab())
    g.dense("fc", n, w_bits=b.wb(), logits=True)


def _alexnet_s(g: GraphBuilder, b: _Bits, c: int, n: int) -> None:
    g.conv("conv0", 2 * c, 5, w_bits=b.wb(), a_bits=b.ab())
    g.maxpool("pool0", 2)
    g.conv("conv1", 4 * c, 3, w_bits=b.wb(), a_bits=b.ab())
    g.maxpool("pool1", 2)
    g.conv("conv2", 6 * c, 3, w_bits=b.wb(), a_bits=b.ab())
    g.conv("conv3", 4 * c, 3, w_bits=b.wb(), a_bits=b.ab())
    g.maxpool("pool2", 2)
    g.dense("fc0", 16 * c, w_bits=b.wb(), a_bits=b.ab())
    g.dense("fc1", 16 * c, w_bits=b.wb(), a_bits=b.ab())
    g.dense("fc", n, w_bits=b.wb(), logits=True)


def _sepconv(g: GraphBuilder, b: _Bits, name: str, ch: int, relu=True, src=None) -> str:
    g.dwconv(f"{name}_dw", 3, 1, w_bits=b.wb(), a_bits=b.ab(), relu=relu, src=src)
    return g.conv(f"{name}_pw", ch, 1, w_bits=b.wb(), a_bits=b.ab(), relu=relu)


def _xception_fpn(g: GraphBuilder, b: _Bits, c: int, n: int) -> None:
    # Entry flow: a strided stem, then one separable block with a strided
    # 1x1 shortcut (Xception's entry blocks, one of them).
    g.conv("stem0", c, 3, stride=2, w_bits=b.wb(), a_bits=b.ab())
    c1 = g.conv("stem1", 2 * c, 3, w_bits=b.wb(), a_bits=b.ab())
    _sepconv(g, b, "entry_a", 4 * c)
    _sepconv(g, b, "entry_b", 4 * c, relu=False)
    main = g.maxpool("entry_pool", 2)
    short = g.conv("entry_short", 4 * c, 1, stride=2, pad=0, w_bits=b.wb(), a_bits=b.ab(),
                   relu=False, src=c1)
    entry = g.add("entry_add", main, short, a_bits=b.ab())
    # Middle flow, once: three separable convs around an identity shortcut.
    _sepconv(g, b, "mid_a", 4 * c)
    _sepconv(g, b, "mid_b", 4 * c)
    _sepconv(g, b, "mid_c", 4 * c, relu=False)
    mid = g.add("mid_add", g.layers[-1]["name"], entry, a_bits=b.ab())
    # Exit at half resolution, then the FPN top-down merge back onto the
    # middle flow's resolution, where cracks are still a few pixels wide.
    g.maxpool("exit_pool", 2, src=mid)
    deep = _sepconv(g, b, "exit", 8 * c)
    top = g.conv("fpn_top", 4 * c, 1, pad=0, w_bits=b.wb(), a_bits=b.ab(), relu=False, src=deep)
    up = g.upsample("fpn_up", src=top)
    lat = g.conv("fpn_lat", 4 * c, 1, pad=0, w_bits=b.wb(), a_bits=b.ab(), relu=False, src=mid)
    merged = g.add("fpn_add", up, lat, a_bits=b.ab())
    g.conv("cam", 4 * c, 3, w_bits=b.wb(), a_bits=b.ab(), src=merged)
    g.gap("gap", a_bits=b.ab())
    g.dense("fc", n, w_bits=b.wb(), logits=True)


# One layer of each kind, then the smallest logits head the core needs: the
# synthesizable test tops of the HLS templates (hls/layer_tops.py).
LAYER_TOPS = ("conv3x3", "conv1x1_s2", "conv5x5", "dwconv", "maxpool", "gap", "dense", "add",
              "upsample", "quant", "conv_thr", "dense_thr")


def _layer_top(g: GraphBuilder, b: _Bits, c: int, n: int, kind: str) -> None:
    w, a = b.wb(), b.ab()
    if kind == "conv3x3":
        g.conv("dut", c, 3, w_bits=w, a_bits=a)
    elif kind == "conv1x1_s2":
        g.conv("dut", c, 1, stride=2, pad=0, w_bits=w, a_bits=a)
    elif kind == "conv5x5":
        g.conv("dut", c, 5, w_bits=w, a_bits=a, relu=False)
    elif kind in ("dwconv", "maxpool", "gap", "upsample", "quant", "add"):
        src = g.conv("stem", c, 1, pad=0, w_bits=w, a_bits=a)
        if kind == "dwconv":
            g.dwconv("dut", 3, 2, w_bits=w, a_bits=a)
        elif kind == "maxpool":
            g.maxpool("dut", 3, 2)
        elif kind == "gap":
            g.gap("dut", a_bits=a)
        elif kind == "upsample":
            g.upsample("dut")
        elif kind == "quant":
            g.quant("dut", a_bits=a)
        else:
            other = g.conv("branch", c, 3, w_bits=w, a_bits=a, relu=False, src=src)
            g.add("dut", src, other, a_bits=a)
    elif kind == "dense":
        g.dense("dut", 2 * c, w_bits=w, a_bits=a)
    elif kind == "conv_thr":      # FINN MultiThreshold requantization (imported models)
        g.conv("dut", c, 3, pad=0, w_bits=w, a_bits=a, thresholds=True)
    elif kind == "dense_thr":
        g.dense("dut", 2 * c, w_bits=w, a_bits=a, thresholds=True)
    else:
        raise ValueError(f"unknown layer top {kind!r}; known: {', '.join(LAYER_TOPS)}")
    g.dense("fc", n, w_bits=w, logits=True)


_BUILDERS = {"vgg_s": _vgg_s, "mobilenet_s": _mobilenet_s, "alexnet_s": _alexnet_s,
             "xception_fpn": _xception_fpn}
FAMILIES: dict[str, type] = {name: ZooSpec for name in (*_BUILDERS, "layer_top")}
WAFER_FAMILIES = ("vgg_s", "mobilenet_s", "alexnet_s")


def buffer_spec(w_bits=4, a_bits=4, in_size=64, width=8) -> ZooSpec:
    return ZooSpec("xception_fpn", in_size=in_size, w_bits=w_bits, a_bits=a_bits, width=width,
                   classes=BUFFER_CLASSES)
