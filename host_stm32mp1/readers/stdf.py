"""STDF V4 wafer test results -> bin maps (0 = no die, 1 = pass, 2 = fail).

A minimal reader of the records a wafer map needs (FAR, MIR, WIR, PIR, PRR,
WRR, HBR/SBR); every other record is skipped by its length. Written here
rather than taken from PyPI so the host keeps to numpy and the stdlib.

One map per wafer (WIR .. WRR, per test head), over the X/Y bounding box of
its parts: row = Y - min Y, column = X - min X. A part that is tested again
(a later PRR at the same X/Y) replaces the earlier result. Pass or fail:

1. with ``pass_bins`` (``--pass-bins``): the hard bin is in that set;
2. else PART_FLG bit 3 (0 pass, 1 fail), unless bit 4 says it is invalid;
3. else the HBR's pass/fail flag for the hard bin, else hard bin 1 passes.

Files ending in .gz are decompressed first.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FAR, MIR, WIR, WRR, HBR, PIR, PRR = (0, 10), (1, 10), (2, 10), (2, 20), (1, 40), (5, 10), (5, 20)
INVALID_COORD = -32768
MAX_CELLS = 4096 * 4096
MAX_BYTES = 1 << 30


class _Fields:
    """Sequential field reader over one record; trailing fields may be
    omitted (the spec allows it), which reads as None."""

    def __init__(self, data: bytes, endian: str):
        self.data, self.pos, self.e = data, 0, endian

    def _num(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            self.pos = len(self.data)
            return None
        (v,) = struct.unpack_from(self.e + fmt, self.data, self.pos)
        self.pos += size
        return v

    def u1(self): return self._num("B")
    def u2(self): return self._num("H")
    def u4(self): return self._num("I")
    def i2(self): return self._num("h")

    def cn(self):
        n = self.u1()
        if n is None:
            return None
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("latin-1")

    def c1(self):
        if self.pos >= len(self.data):
            return None
        self.pos += 1
        return chr(self.data[self.pos - 1])


def records(raw: bytes):
    """(typ, sub, body, offset) of every record; checks the FAR and lengths."""
    if len(raw) < 6:
        raise ValueError("too short for an STDF file (no FAR record)")
    if raw[2:4] != bytes([0, 10]) or raw[:2] not in (b"\x00\x02", b"\x02\x00"):
        raise ValueError("not an STDF file: it does not start with a FAR record")
    cpu, ver = raw[4], raw[5]
    if ver != 4:
        raise ValueError(f"STDF version {ver}: only V4 is supported")
    endian = ">" if cpu == 1 else "<"
    head = struct.Struct(endian + "HBB")
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ValueError(f"truncated: {len(raw) - pos} stray bytes at offset {pos}")
        length, typ, sub = head.unpack_from(raw, pos)
        if pos + 4 + length > len(raw):
            raise ValueError(f"truncated: record {typ}/{sub} at offset {pos} needs {length} "
                             f"bytes, {len(raw) - pos - 4} left")
        yield typ, sub, _Fields(raw[pos + 4:pos + 4 + length], endian)
        pos += 4 + length


class _Wafer:
    def __init__(self, head: int, wafer_id: str | None):
        self.head, self.wafer_id = head, wafer_id
        self.parts: dict[tuple[int, int], tuple[int, bool | None]] = {}


def _passed(flag, hard_bin, pass_bins, hbin_pf) -> bool:
    if pass_bins is not None:
        return hard_bin in pass_bins
    if flag is not None and not flag & 0x10:
        return not flag & 0x08
    if hard_bin in hbin_pf:
        return hbin_pf[hard_bin]
    return hard_bin == 1


def parse(raw: bytes, pass_bins=None) -> list[tuple[np.ndarray, dict]]:
    lot, wafers, open_by_head, loose = None, [], {}, None
    hbin_pf: dict[int, bool] = {}
    pending = []   # (wafer, x, y, flag, hard_bin, soft_bin): decided after the HBRs (often at the end)
    for typ, sub, f in records(raw):
        rec = (typ, sub)
        if rec == MIR:
            f.u4(), f.u4(), f.u1(), f.c1(), f.c1(), f.c1(), f.u2(), f.c1()
            lot = f.cn()
        elif rec == WIR:
            head, _grp, _t = f.u1(), f.u1(), f.u4()
            w = _Wafer(head, f.cn())
            wafers.append(w)
            open_by_head[head] = w
        elif rec == WRR:
            open_by_head.pop(f.u1(), None)
        elif rec == HBR:
            f.u1(), f.u1()
            num, _cnt, pf = f.u2(), f.u4(), f.c1()
            if num is not None and pf in ("P", "F"):
                hbin_pf[num] = pf == "P"
        elif rec == PRR:
            head, _site, flag, _n = f.u1(), f.u1(), f.u1(), f.u2()
            hard, soft, x, y = f.u2(), f.u2(), f.i2(), f.i2()
            if x is None or y is None or INVALID_COORD in (x, y):
                continue   # a part without a die location (e.g. a package test) has no pixel
            w = open_by_head.get(head)
            if w is None:
                if loose is None:
                    loose = _Wafer(head, None)
                    wafers.append(loose)
                w = loose
            pending.append((w, x, y, flag, hard, soft))
    for w, x, y, flag, hard, _soft in pending:
        w.parts[(x, y)] = _passed(flag, hard, pass_bins, hbin_pf)
    out = []
    for i, w in enumerate(wafers):
        if not w.parts:
            continue
        xy = np.array(list(w.parts), dtype=np.int64)
        (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
        h, wd = int(y1 - y0 + 1), int(x1 - x0 + 1)
        if h * wd > MAX_CELLS:
            raise ValueError(f"wafer {w.wafer_id or i}: bounding box {h}x{wd} is too large")
        m = np.zeros((h, wd), np.uint8)
        m[xy[:, 1] - y0, xy[:, 0] - x0] = [1 if ok else 2 for ok in w.parts.values()]
        meta = dict(wafer_id=w.wafer_id, head=w.head, lot_id=lot, x_min=int(x0), y_min=int(y0),
                    n_parts=len(w.parts))
        out.append((m, meta))
    if not out:
        raise ValueError("no part results (PRR) with X/Y coordinates")
    return out


def read(path: Path, pass_bins=None, **_):
    path = Path(path)
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as g:
            raw = g.read(MAX_BYTES + 1)
    else:
        raw = path.read_bytes()
    if len(raw) > MAX_BYTES:
        raise ValueError("STDF file larger than 1 GiB")
    return parse(raw, pass_bins), None
