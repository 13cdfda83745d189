"""SEMI G85 XML wafer maps (the ``<Maps><Map><Device>`` layout).

    <Maps>
      <Map SubstrateType="Wafer" SubstrateId="W01" FormatRevision="G85-0703">
        <Device ProductId="P" LotId="L" Rows="3" Columns="4" NullBin="FF"
                BinType="HexaDecimal" Orientation="0" OriginLocation="0">
          <ReferenceDevice ReferenceDeviceX="1" ReferenceDeviceY="0"/>
          <Bin BinCode="01" BinQuality="Pass" BinDescription="good"/>
          <Bin BinCode="0A" BinQuality="Fail"/>
          <Data MapName="Map" MapVersion="1">
            <Row><![CDATA[FF 01 0A FF]]></Row> ...

Bins map to categories through their ``BinQuality``: Pass -> 1, Fail -> 2;
the ``NullBin`` code and bins of quality Null/None -> 0 (no die). A code that
no ``<Bin>`` declares is an error: guessing pass or fail would put a made-up
die on the map. Rows are whitespace-separated codes, or (BinType ASCII, or
no separators) fixed-width codes of the NullBin's width. ``Orientation``
and ``OriginLocation`` are kept as metadata; the map is used as written,
since the classes do not depend on rotation (training augments by it).

Each ``<Bin>``'s ``BinCount``, where given, must match the dies of that bin
in the rows: a disagreement means a damaged or hand-edited map. Identity:
``lot_id`` = LotId, ``wafer_id`` = WaferId (else the Map's SubstrateId),
``part`` = ProductId; G85 has no tester field.

Documents with a DOCTYPE or entities are refused in the parser (``xmlsafe``).
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from host_stm32mp1.readers.limits import MAX_SIDE, check_shape
from host_stm32mp1.readers.xmlsafe import attr as _attr, children as _children, local as _local

NULL_QUALITIES = {"null", "none", "nodie", "no die", "skip", "ugly"}


def int_attr(el, name: str, where: str) -> int | None:
    v = _attr(el, name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{where}: {name}={v!r} is not an integer") from None


def split_cells(text: str, width: int) -> list[str]:
    text = text.strip()
    if text.lower().startswith("rowdata:"):  # the ASCII G85 row prefix, seen inside XML too
        text = text[8:].strip()
    if re.search(r"\s", text):
        return text.split()
    if width < 1 or len(text) % width:
        raise ValueError(f"row of {len(text)} characters is not a whole number of "
                         f"{width}-character bin codes")
    return [text[i:i + width] for i in range(0, len(text), width)]


def bin_category(quality, code: str, where: str) -> int:
    """A bin's die category from its BinQuality (G85 and E142 spell it alike)."""
    q = (quality or "").strip().lower()
    if q == "pass":
        return 1
    if q == "fail":
        return 2
    if q in NULL_QUALITIES:
        return 0
    raise ValueError(f"{where}: bin {code!r} has BinQuality={q or '(none)'!r}, "
                     "expected Pass, Fail or Null")


def canon_code(code: str, hexa: bool) -> str:
    # "1" and "01" are the same hexadecimal or decimal bin; ASCII codes compare as written.
    if hexa is None:
        return code
    try:
        return str(int(code, 16 if hexa else 10))
    except ValueError:
        return code


def _read_map(m, index: int):
    where = f"Map {index}"
    devices = _children(m, "Device")
    if len(devices) != 1:
        raise ValueError(f"{where}: expected one <Device>, found {len(devices)}")
    dev = devices[0]
    rows_n = int_attr(dev, "Rows", where)
    cols_n = int_attr(dev, "Columns", where)
    bin_type = (_attr(dev, "BinType") or "ASCII").strip().lower()
    hexa = True if bin_type.startswith("hex") else False if bin_type.startswith("dec") else None
    null_raw = _attr(dev, "NullBin")
    null = canon_code(null_raw, hexa) if null_raw is not None else None
    categories = {}
    for b in _children(dev, "Bin"):
        code = _attr(b, "BinCode")
        if code is None:
            raise ValueError(f"{where}: a <Bin> without BinCode")
        categories[canon_code(code, hexa)] = bin_category(_attr(b, "BinQuality"), code, where)
    if null is not None:
        categories[null] = 0
    counts = {}
    for b in _children(dev, "Bin"):
        n = int_attr(b, "BinCount", where)
        if n is not None:
            counts[canon_code(_attr(b, "BinCode"), hexa)] = (_attr(b, "BinCode"), n)
    if rows_n is not None and cols_n is not None:
        check_shape(rows_n, cols_n, where)
    datas = _children(dev, "Data")
    if len(datas) != 1:
        raise ValueError(f"{where}: expected one <Data>, found {len(datas)}")
    width = len(null_raw) if null_raw else (2 if hexa else 1)
    rows, seen = [], Counter()
    row_els = _children(datas[0], "Row")
    if len(row_els) > MAX_SIDE:
        check_shape(len(row_els), 0, where)
    for r, row in enumerate(row_els):
        try:
            cells = split_cells(row.text or "", width)
        except ValueError as e:
            raise ValueError(f"{where} row {r}: {e}") from None
        out = []
        for c in cells:
            cat = categories.get(canon_code(c, hexa))
            if cat is None:
                raise ValueError(f"{where} row {r}: bin code {c!r} is not declared by a <Bin> "
                                 "(and is not the NullBin)")
            out.append(cat)
            seen[canon_code(c, hexa)] += 1
        if len(out) > MAX_SIDE:
            check_shape(len(row_els), len(out), where)
        rows.append(out)
    if not rows:
        raise ValueError(f"{where}: <Data> has no <Row>")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"{where}: rows have different lengths {sorted(widths)}")
    if rows_n is not None and rows_n != len(rows):
        raise ValueError(f"{where}: Device says Rows={rows_n}, <Data> has {len(rows)} rows")
    if cols_n is not None and cols_n != len(rows[0]):
        raise ValueError(f"{where}: Device says Columns={cols_n}, rows have {len(rows[0])} codes")
    for key, (code, n) in counts.items():
        if seen[key] != n:
            raise ValueError(f"{where}: bin {code!r} has BinCount={n}, the rows hold {seen[key]} "
                             "dies of it (damaged or edited map)")
    meta = {k: _attr(m, k) for k in ("SubstrateId", "SubstrateType", "WaferId")
            if _attr(m, k) is not None}
    meta.update({k: _attr(dev, k) for k in ("LotId", "ProductId", "Orientation", "OriginLocation",
                                             "WaferId") if _attr(dev, k) is not None})
    meta.update(lot_id=meta.get("LotId"), wafer_id=meta.get("WaferId") or meta.get("SubstrateId"),
                part=meta.get("ProductId"))
    refs = [(int_attr(rd, "ReferenceDeviceX", where), int_attr(rd, "ReferenceDeviceY", where))
            for rd in _children(dev, "ReferenceDevice")]
    if refs:
        meta["reference_devices"] = refs
    return np.asarray(rows, dtype=np.uint8), meta


def read_maps(root):
    """Maps of a parsed G85 document (root ``<Maps>`` or ``<Map>``)."""
    if _local(root.tag) == "Map":
        maps = [root]
    else:
        maps = _children(root, "Map")
    if not maps:
        raise ValueError("<Maps> holds no <Map>")
    return [_read_map(m, i) for i, m in enumerate(maps)]
