"""A model whose topology is a literal layer list: what ``make import`` writes.

The built-in families compute their layer graph from a few numbers
(``contract.spec``, ``contract.zoo``). An imported QONNX model has no such
rule, so its spec carries the layer list itself, checked on load
(``contract.graph.check_layers``), plus what the integer layers cannot hold:

- ``in_h``, ``in_w``: the input may be non-square.
- ``in_bits``: width of the input codes (1..8; BNN-PYNQ's LFC takes 1-bit).
- ``host_pre``: the float steps before the first quantizer, which the host
  runs (for example ``{"scale": 127.5, "offset": 0.0}``: code =
  clamp(round(x * scale + offset), 0, 2**in_bits - 1)). None for pixel codes.
- ``host_post``: the float steps after the last integer layer, which the host
  runs on the logits (``{"scale": [...], "offset": [...]}`` per class, or a
  scalar each): real = logit * scale + offset. None when the logits are final.

Everything else (classes, the integer layers) has the meaning it has for
every other family, so hls/, the service and the host treat an imported model
like a zoo one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from contract.graph import check_layers
from contract.spec import SpecFace


@dataclass(frozen=True)
class GraphSpec(SpecFace):
    name: str
    in_h: int
    in_w: int
    in_channels: int
    classes: tuple[str, ...]
    graph: tuple[dict, ...]
    family: str = "graph"
    in_bits: int = 8
    host_pre: dict | None = None
    host_post: dict | None = None
    source: dict = field(default_factory=dict)   # where it came from (file, importer notes)

    def __post_init__(self):
        if self.family != "graph":
            raise ValueError(f"GraphSpec family must be 'graph', got {self.family!r}")
        if not 1 <= self.in_bits <= 8:
            raise ValueError(f"input bits {self.in_bits} outside 1..8")
        if not self.graph:
            raise ValueError("an imported model needs at least one layer")
        check_layers(list(self.graph), (self.in_h, self.in_w, self.in_channels))
        last = self.graph[-1]
        if last["type"] != "dense" or last["requant"] or last["out_features"] != len(self.classes):
            raise ValueError(f"the last layer must be a dense logits layer with {len(self.classes)} "
                             f"outputs (one per class), got {last['type']} {last['name']!r}")

    @property
    def in_size(self) -> int:
        # Square consumers (the wafer-map preprocessing) read in_size; say why not, where not.
        if self.in_h != self.in_w:
            raise ValueError(f"model {self.name} takes {self.in_h}x{self.in_w} inputs, not square ones")
        return self.in_h

    def layers(self) -> list[dict]:
        return copy.deepcopy(list(self.graph))

    def to_dict(self) -> dict:
        d = {k: copy.deepcopy(getattr(self, k)) for k in self.__dataclass_fields__}
        d["classes"], d["graph"] = list(self.classes), list(d["graph"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GraphSpec":
        d = dict(d)
        d["classes"] = tuple(d["classes"])
        d["graph"] = tuple(copy.deepcopy(list(d["graph"])))
        return cls(**d)
