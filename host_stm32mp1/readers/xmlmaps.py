"""XML wafer maps: SEMI G85 (``<Maps>``/``<Map>``) or SEMI E142 (``<MapData>``),
told apart by the root element. Parsed with ``xmlsafe`` (no DOCTYPE, no entities)."""
from __future__ import annotations

from host_stm32mp1.readers import e142, g85, xmlsafe


def read(data: bytes, **_):
    root = xmlsafe.parse(data)
    kind = xmlsafe.local(root.tag)
    if kind in ("Maps", "Map"):
        return g85.read_maps(root), None
    if kind == "MapData":
        return e142.read_maps(root), None
    raise ValueError(f"root element <{kind}>: not a SEMI G85 map (<Maps> or <Map>) or a "
                     "SEMI E142 map (<MapData>)")
