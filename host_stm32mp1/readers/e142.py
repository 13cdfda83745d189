"""SEMI E142 substrate maps (XML, ``<MapData>``), bin-code overlays.

    <MapData xmlns="urn:semi-org:xsd.E142-1.V1005.SubstrateMap">
      <Layouts>
        <Layout LayoutId="Devices" DefaultUnits="mm">
          <Dimension X="40" Y="30"/> ...
      <Substrates>
        <Substrate SubstrateType="Wafer" SubstrateId="W01"><LotId>L1</LotId> ...
      <SubstrateMaps>
        <SubstrateMap SubstrateType="Wafer" SubstrateId="W01" LayoutSpecifier="WaferLayout/Devices"
                      Orientation="0" OriginLocation="LowerLeft" AxisDirection="UpRight">
          <Overlay MapName="BinCodeMap" MapVersion="1">
            <BinCodeMap BinType="HexaDecimal" NullBin="FF">
              <BinDefinitions>
                <BinDefinition BinCode="01" BinQuality="Pass" BinCount="812"/> ...
              </BinDefinitions>
              <BinCode>FFFF0101...</BinCode>      (one element a row)

Every ``<SubstrateMap>`` with a ``BinCodeMap`` overlay is one map. Bin
qualities, code widths and BinCount checks follow the G85 reader (the two
standards share the bin vocabulary). Where the layout named by the map's
``LayoutSpecifier`` gives a ``Dimension``, the rows must match it. Identity:
``wafer_id`` = SubstrateId, ``lot_id`` = the ``<Substrate>``'s LotId,
``part`` = its ProductId where present.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from host_stm32mp1.readers.g85 import bin_category, canon_code, int_attr, split_cells
from host_stm32mp1.readers.limits import check_shape
from host_stm32mp1.readers.xmlsafe import attr, children


def _text(el, name):
    found = children(el, name)
    return (found[0].text or "").strip() if found else None


def _layout_dims(root) -> dict:
    dims = {}
    for layouts in children(root, "Layouts"):
        for lay in children(layouts, "Layout"):
            d = children(lay, "Dimension")
            if d:
                dims[attr(lay, "LayoutId")] = (int_attr(d[0], "Y", "Dimension"),
                                               int_attr(d[0], "X", "Dimension"))
    return dims


def _substrates(root) -> dict:
    out = {}
    for subs in children(root, "Substrates"):
        for s in children(subs, "Substrate"):
            out[attr(s, "SubstrateId")] = dict(lot_id=_text(s, "LotId") or attr(s, "LotId"),
                                               part=_text(s, "ProductId") or attr(s, "ProductId"))
    return out


def _bin_map(bm, where: str):
    bin_type = (attr(bm, "BinType") or "ASCII").strip().lower()
    hexa = True if bin_type.startswith("hex") else False if bin_type.startswith(("dec", "int")) else None
    null_raw = attr(bm, "NullBin")
    categories, counts = {}, {}
    for defs in children(bm, "BinDefinitions"):
        for b in children(defs, "BinDefinition"):
            code = attr(b, "BinCode")
            if code is None:
                raise ValueError(f"{where}: a <BinDefinition> without BinCode")
            categories[canon_code(code, hexa)] = bin_category(attr(b, "BinQuality"), code, where)
            n = int_attr(b, "BinCount", where)
            if n is not None:
                counts[canon_code(code, hexa)] = (code, n)
    if null_raw is not None:
        categories[canon_code(null_raw, hexa)] = 0
    width = len(null_raw) if null_raw else (2 if hexa else 1)
    row_els = children(bm, "BinCode")
    if not row_els:
        raise ValueError(f"{where}: <BinCodeMap> has no <BinCode> rows")
    check_shape(len(row_els), 0, where)
    rows, seen = [], Counter()
    for r, el in enumerate(row_els):
        try:
            cells = split_cells(el.text or "", width)
        except ValueError as e:
            raise ValueError(f"{where} row {r}: {e}") from None
        check_shape(len(row_els), len(cells), where)
        row = []
        for c in cells:
            key = canon_code(c, hexa)
            if key not in categories:
                raise ValueError(f"{where} row {r}: bin code {c!r} is not declared by a "
                                 "<BinDefinition> (and is not the NullBin)")
            row.append(categories[key])
            seen[key] += 1
        rows.append(row)
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{where}: rows have different lengths {sorted({len(r) for r in rows})}")
    for key, (code, n) in counts.items():
        if seen[key] != n:
            raise ValueError(f"{where}: bin {code!r} has BinCount={n}, the rows hold {seen[key]} "
                             "dies of it (damaged or edited map)")
    return np.asarray(rows, dtype=np.uint8)


def read_maps(root):
    dims, subs, out = _layout_dims(root), _substrates(root), []
    for group in children(root, "SubstrateMaps"):
        for i, sm in enumerate(children(group, "SubstrateMap")):
            sid = attr(sm, "SubstrateId")
            where = f"SubstrateMap {sid or i}"
            overlays = [bm for ov in children(sm, "Overlay") for bm in children(ov, "BinCodeMap")]
            if len(overlays) != 1:
                raise ValueError(f"{where}: expected one <Overlay> with a <BinCodeMap>, found "
                                 f"{len(overlays)}")
            m = _bin_map(overlays[0], where)
            spec = attr(sm, "LayoutSpecifier") or ""
            want = dims.get(spec.rsplit("/", 1)[-1])
            if want and None not in want and want != m.shape:
                raise ValueError(f"{where}: layout {spec!r} is {want[0]}x{want[1]} devices, the "
                                 f"map has {m.shape[0]}x{m.shape[1]}")
            meta = dict(format="E142", wafer_id=sid, **subs.get(sid, {}))
            meta.update({k: attr(sm, k) for k in ("SubstrateType", "Orientation", "OriginLocation",
                                                  "AxisDirection") if attr(sm, k) is not None})
            out.append((m, meta))
    if not out:
        raise ValueError("<MapData> holds no <SubstrateMap>")
    return out
