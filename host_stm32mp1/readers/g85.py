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

Documents with a DOCTYPE or entities are refused (entity expansion bombs).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

MAX_CELLS = 4096 * 4096
_NULL_QUALITIES = {"null", "none", "nodie", "no die", "skip", "ugly"}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el, name: str):
    return [c for c in el if _local(c.tag) == name]


def _attr(el, name: str, default=None):
    for k, v in el.attrib.items():
        if _local(k).lower() == name.lower():
            return v
    return default


def _int_attr(el, name: str, where: str) -> int | None:
    v = _attr(el, name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{where}: {name}={v!r} is not an integer") from None


def _cells(text: str, width: int) -> list[str]:
    text = text.strip()
    if text.lower().startswith("rowdata:"):  # the ASCII G85 row prefix, seen inside XML too
        text = text[8:].strip()
    if re.search(r"\s", text):
        return text.split()
    if width < 1 or len(text) % width:
        raise ValueError(f"row of {len(text)} characters is not a whole number of "
                         f"{width}-character bin codes")
    return [text[i:i + width] for i in range(0, len(text), width)]


def _canon(code: str, hexa: bool) -> str:
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
    rows_n = _int_attr(dev, "Rows", where)
    cols_n = _int_attr(dev, "Columns", where)
    bin_type = (_attr(dev, "BinType") or "ASCII").strip().lower()
    hexa = True if bin_type.startswith("hex") else False if bin_type.startswith("dec") else None
    null_raw = _attr(dev, "NullBin")
    null = _canon(null_raw, hexa) if null_raw is not None else None
    categories = {}
    for b in _children(dev, "Bin"):
        code = _attr(b, "BinCode")
        quality = (_attr(b, "BinQuality") or "").strip().lower()
        if code is None:
            raise ValueError(f"{where}: a <Bin> without BinCode")
        if quality == "pass":
            cat = 1
        elif quality == "fail":
            cat = 2
        elif quality in _NULL_QUALITIES:
            cat = 0
        else:
            raise ValueError(f"{where}: bin {code!r} has BinQuality={quality or '(none)'!r}, "
                             "expected Pass, Fail or Null")
        categories[_canon(code, hexa)] = cat
    if null is not None:
        categories[null] = 0
    datas = _children(dev, "Data")
    if len(datas) != 1:
        raise ValueError(f"{where}: expected one <Data>, found {len(datas)}")
    width = len(null_raw) if null_raw else (2 if hexa else 1)
    rows = []
    for r, row in enumerate(_children(datas[0], "Row")):
        try:
            cells = _cells(row.text or "", width)
        except ValueError as e:
            raise ValueError(f"{where} row {r}: {e}") from None
        out = []
        for c in cells:
            cat = categories.get(_canon(c, hexa))
            if cat is None:
                raise ValueError(f"{where} row {r}: bin code {c!r} is not declared by a <Bin> "
                                 "(and is not the NullBin)")
            out.append(cat)
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
    if len(rows) * len(rows[0]) > MAX_CELLS:
        raise ValueError(f"{where}: {len(rows)}x{len(rows[0])} map is too large")
    meta = {k: _attr(m, k) for k in ("SubstrateId", "SubstrateType") if _attr(m, k) is not None}
    meta.update({k: _attr(dev, k) for k in ("LotId", "ProductId", "Orientation", "OriginLocation")
                 if _attr(dev, k) is not None})
    refs = [(_int_attr(rd, "ReferenceDeviceX", where), _int_attr(rd, "ReferenceDeviceY", where))
            for rd in _children(dev, "ReferenceDevice")]
    if refs:
        meta["reference_devices"] = refs
    return np.asarray(rows, dtype=np.uint8), meta


def read(path: Path, **_):
    raw = Path(path).read_bytes()
    head = raw[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in raw.lower():
        raise ValueError("XML with a DOCTYPE or entities is refused")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise ValueError(f"malformed XML: {e}") from None
    if _local(root.tag) == "Map":
        maps = [root]
    elif _local(root.tag) == "Maps":
        maps = _children(root, "Map")
    else:
        raise ValueError(f"root element <{_local(root.tag)}>: not a SEMI G85 map (<Maps> or <Map>)")
    if not maps:
        raise ValueError("<Maps> holds no <Map>")
    return [_read_map(m, i) for i, m in enumerate(maps)], None
