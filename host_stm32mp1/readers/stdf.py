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

Completeness: a wafer with no WRR (end-of-wafer record), or a file with no
MRR (master results record, the last record a tester writes), is partial:
the tester has not finished it or the copy was cut. Such a wafer is an error
record, not a classified map (a partial map looks like a defect pattern),
unless ``allow_incomplete`` (``--allow-incomplete``), which classifies it with
a warning in the record.

Stray dies: a die far outside the wafer's cluster of coordinates (a tester
writing X/Y 2000,2000 for a die it could not place) would stretch the
bounding box and shrink the wafer to a dot. The extent is taken from the
main cluster (``robust_extent``); dies outside it are dropped and counted in
the record's warnings.

Identity: lot_id (MIR LOT_ID), wafer_id (WIR/WRR WAFER_ID), part (MIR
PART_TYP), tester (MIR NODE_NAM, with TSTR_TYP in brackets).
"""
from __future__ import annotations

import gzip
import io
import struct

import numpy as np

from host_stm32mp1.readers.limits import MAX_FILE_BYTES, Incomplete, check_shape

FAR, MIR, MRR, WIR, WRR, HBR, PIR, PRR = ((0, 10), (1, 10), (1, 20), (2, 10), (2, 20), (1, 40),
                                          (5, 10), (5, 20))
INVALID_COORD = -32768
GAP = 16          # empty rows/columns that split the die coordinates into clusters
STRAY_SHARE = 0.02  # clusters off the main one holding at most this share of dies are strays


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
            raise Incomplete(f"truncated: {len(raw) - pos} stray bytes at offset {pos}")
        length, typ, sub = head.unpack_from(raw, pos)
        if pos + 4 + length > len(raw):
            raise Incomplete(f"truncated: record {typ}/{sub} at offset {pos} needs {length} "
                             f"bytes, {len(raw) - pos - 4} left")
        yield typ, sub, _Fields(raw[pos + 4:pos + 4 + length], endian)
        pos += 4 + length


class _Wafer:
    def __init__(self, head: int, wafer_id: str | None):
        self.head, self.wafer_id = head, wafer_id
        self.parts: dict[tuple[int, int], tuple[int, bool | None]] = {}
        self.ended = False


def _main_span(values: np.ndarray, keep: float) -> tuple[int, int]:
    """The span of the main cluster of coordinates. Clusters are split at gaps of
    more than GAP; starting from the largest, a neighbour joins when its gap is
    no wider than the span so far (a sparsely sampled wafer stays whole), or
    while fewer than ``keep`` of the dies are in. What stays out is stray."""
    u, n = np.unique(values, return_counts=True)
    cuts = np.nonzero(np.diff(u) > GAP)[0]
    starts, ends = np.r_[0, cuts + 1], np.r_[cuts, len(u) - 1]
    sizes = np.array([n[a:b + 1].sum() for a, b in zip(starts, ends)])
    lo = hi = int(sizes.argmax())
    while lo > 0 or hi + 1 < len(sizes):
        span = u[ends[hi]] - u[starts[lo]]
        short = sizes[lo:hi + 1].sum() < keep * n.sum()
        gap_l = u[starts[lo]] - u[ends[lo - 1]] if lo > 0 else None
        gap_r = u[starts[hi + 1]] - u[ends[hi]] if hi + 1 < len(sizes) else None
        near_l = gap_l is not None and (gap_l <= max(GAP, span) or short)
        near_r = gap_r is not None and (gap_r <= max(GAP, span) or short)
        if near_l and (not near_r or gap_l <= gap_r):
            lo -= 1
        elif near_r:
            hi += 1
        else:
            break
    return int(u[starts[lo]]), int(u[ends[hi]])


def robust_extent(xy: np.ndarray) -> tuple[np.ndarray, list]:
    """Mask of the dies inside the wafer's extent, and the stray coordinates."""
    keep = 1.0 - STRAY_SHARE
    (x0, x1), (y0, y1) = _main_span(xy[:, 0], keep), _main_span(xy[:, 1], keep)
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    return inside, [tuple(map(int, p)) for p in xy[~inside]]


def _passed(flag, hard_bin, pass_bins, hbin_pf) -> bool:
    if pass_bins is not None:
        return hard_bin in pass_bins
    if flag is not None and not flag & 0x10:
        return not flag & 0x08
    if hard_bin in hbin_pf:
        return hbin_pf[hard_bin]
    return hard_bin == 1


def parse(raw: bytes, pass_bins=None, allow_incomplete: bool = False) -> list[tuple[np.ndarray, dict]]:
    lot, wafers, open_by_head, loose = None, [], {}, None
    ident, has_mrr = {}, False
    hbin_pf: dict[int, bool] = {}
    pending = []   # (wafer, x, y, flag, hard_bin, soft_bin): decided after the HBRs (often at the end)
    for typ, sub, f in records(raw):
        rec = (typ, sub)
        if rec == MIR:
            f.u4(), f.u4(), f.u1(), f.c1(), f.c1(), f.c1(), f.u2(), f.c1()
            lot, part, node, tstr = f.cn(), f.cn(), f.cn(), f.cn()
            tester = node or tstr
            if node and tstr:
                tester = f"{node} ({tstr})"
            ident = dict(part=part or None, tester=tester or None)
        elif rec == MRR:
            has_mrr = True
        elif rec == WIR:
            head, _grp, _t = f.u1(), f.u1(), f.u4()
            w = _Wafer(head, f.cn())
            wafers.append(w)
            open_by_head[head] = w
        elif rec == WRR:
            w = open_by_head.pop(f.u1(), None)
            if w is not None:
                w.ended = True
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
        name = w.wafer_id or f"#{i}"
        xy = np.array(list(w.parts), dtype=np.int64)
        passed = np.array(list(w.parts.values()), dtype=bool)
        warnings = []
        inside, strays = robust_extent(xy)
        if strays:
            shown = ", ".join(f"{x},{y}" for x, y in strays[:5]) + (" ..." if len(strays) > 5 else "")
            warnings.append(f"{len(strays)} stray dies outside the wafer's extent dropped (X,Y {shown})")
            xy, passed = xy[inside], passed[inside]
        (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
        h, wd = int(y1 - y0 + 1), int(x1 - x0 + 1)
        check_shape(h, wd, f"wafer {name}: bounding box")
        m = np.zeros((h, wd), np.uint8)
        m[xy[:, 1] - y0, xy[:, 0] - x0] = np.where(passed, 1, 2)
        meta = dict(lot_id=lot, wafer_id=w.wafer_id, **ident, head=w.head, x_min=int(x0),
                    y_min=int(y0), n_parts=len(w.parts))
        missing = []
        if w is loose:
            missing.append("its parts come before any WIR (no wafer record)")
        elif not w.ended:
            missing.append("no WRR (end-of-wafer record): the wafer is partial")
        if not has_mrr:
            missing.append("the file has no MRR (master results record): it is incomplete, "
                           "still being written or cut")
        if missing:
            text = f"wafer {name}: " + "; ".join(missing)
            if allow_incomplete:
                warnings.append(text + " (classified anyway: --allow-incomplete)")
            else:
                meta["error"] = text + " (--allow-incomplete classifies it anyway)"
                meta["incomplete"] = True
        if warnings:
            meta["warnings"] = warnings
        out.append((m, meta))
    if not out:
        raise ValueError("no part results (PRR) with X/Y coordinates")
    return out


def read(data: bytes, pass_bins=None, allow_incomplete: bool = False, name: str = "", **_):
    if name.lower().endswith(".gz"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
                data = g.read(MAX_FILE_BYTES + 1)
        except EOFError:
            raise Incomplete("truncated gzip stream (the file was cut or is still being written)") from None
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"STDF larger than {MAX_FILE_BYTES >> 20} MiB after decompression")
    return parse(data, pass_bins, allow_incomplete), None
