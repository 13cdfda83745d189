"""Readers against what a test engineer met on the line (issue 18, issue 21 item 8):
partial STDF, stray dies, identity, huge images, empty and odd files, E142, BinCount,
and XML DOCTYPEs hidden by an encoding. pystdf 1.4 is the independent STDF reader."""
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from host_stm32mp1 import readers
from test_host_formats import Stdf, bbox, g85_xml, stdf_for, wafer
from wq_service_helpers import ROOT, env


def one(path, **kw):
    got = list(readers.read_file(path, **kw))
    assert len(got) == 1, got
    return got[0]


def pystdf_parts(data: bytes):
    """(wafer_id, lot, part type, node) and the PRR X/Y/HARD_BIN of each part, read by pystdf."""
    Parser = pytest.importorskip("pystdf.IO", reason="pystdf (test extras) is the independent reader").Parser
    import pystdf.V4 as V

    out = dict(prr=[], wir=[], mir=None, wrr=0, mrr=0)

    class Sink:
        def after_send(self, _src, data):
            rec, fields = data
            if rec is V.prr:
                out["prr"].append((fields[rec.fieldNames.index("X_COORD")], fields[rec.fieldNames.index("Y_COORD")],
                                   fields[rec.fieldNames.index("HARD_BIN")]))
            elif rec is V.wir:
                out["wir"].append(fields[rec.fieldNames.index("WAFER_ID")])
            elif rec is V.mir:
                out["mir"] = {k: fields[rec.fieldNames.index(k)] for k in ("LOT_ID", "PART_TYP", "NODE_NAM")}
            elif rec is V.wrr:
                out["wrr"] += 1
            elif rec is V.mrr:
                out["mrr"] += 1

    p = Parser(inp=io.BytesIO(data))
    p.addSink(Sink())
    p.parse()
    return out


# --- item 1: partial STDF -----------------------------------------------------

def test_stdf_identity_agrees_with_pystdf(tmp_path):
    data = stdf_for([wafer(12, 14, seed=1), wafer(9, 9, seed=2)])
    (tmp_path / "lot.stdf").write_bytes(data)
    got = list(readers.read_file(tmp_path / "lot.stdf"))
    ref = pystdf_parts(data)
    assert [g.meta["wafer_id"] for g in got] == ref["wir"] == ["W0", "W1"]
    assert {g.meta["lot_id"] for g in got} == {ref["mir"]["LOT_ID"]}
    assert got[0].meta["part"] == ref["mir"]["PART_TYP"] and got[0].meta["tester"] == ref["mir"]["NODE_NAM"]
    # Die for die: pystdf's PRRs of wafer 0 placed on our map's grid.
    n0 = int((wafer(12, 14, seed=1) > 0).sum())
    m = np.zeros_like(got[0].map)
    x0, y0 = got[0].meta["x_min"], got[0].meta["y_min"]
    for x, y, hb in ref["prr"][:n0]:
        m[y - y0, x - x0] = 1 if hb == 1 else 2
    assert np.array_equal(m, got[0].map)


def _partial(with_wrr, with_mrr):
    s = Stdf()
    s.mir("LOT9")
    m = wafer(19, 42, seed=3)
    s.wir("W7")
    for (r, c), v in np.ndenumerate(m[:10]):   # the tester stopped half way
        if v:
            s.part(c, r, 1 if v == 1 else 7)
    if with_wrr:
        s.wrr("W7", 1, 1)
    s.hbr(7, "F")
    if with_mrr:
        s.mrr()
    return s.bytes()


@pytest.mark.parametrize("with_wrr, with_mrr, message", [
    (False, True, "no WRR"), (True, False, "no MRR"), (False, False, "no WRR")])
def test_partial_stdf_is_refused_unless_allowed(tmp_path, with_wrr, with_mrr, message):
    data = _partial(with_wrr, with_mrr)
    ref = pystdf_parts(data)
    assert (ref["wrr"], ref["mrr"]) == (int(with_wrr), int(with_mrr))   # what we wrote is what pystdf sees
    (tmp_path / "p.stdf").write_bytes(data)
    f = one(tmp_path / "p.stdf")
    assert isinstance(f, readers.Failure) and message in f.reason and "W7" in f.reason, f
    assert f.index == 0 and f.meta["wafer_id"] == "W7"
    g = one(tmp_path / "p.stdf", allow_incomplete=True)
    assert isinstance(g, readers.Item) and any(message in w for w in g.meta["warnings"])


# --- item 4: a stray die --------------------------------------------------------

def test_stray_die_is_dropped_and_warned(tmp_path):
    m = wafer(19, 42, seed=4)
    s = Stdf()
    s.mir("L")
    s.wir("W1")
    for (r, c), v in np.ndenumerate(m):
        if v:
            s.part(c, r, 1 if v == 1 else 7)
    s.part(2000, 2000, 7)
    s.wrr("W1", 1, 1)
    s.hbr(7, "F")
    s.mrr()
    (tmp_path / "s.stdf").write_bytes(s.bytes())
    g = one(tmp_path / "s.stdf")
    assert np.array_equal(g.map, bbox(m)), g.map.shape
    assert g.meta["warnings"] == ["1 stray dies outside the wafer's extent dropped (X,Y 2000,2000)"]


def test_sparse_sampled_wafer_is_not_cut():
    from host_stm32mp1.readers.stdf import robust_extent

    xy = np.array([(x, y) for x in range(0, 2000, 40) for y in range(0, 2000, 40)])
    inside, strays = robust_extent(xy)
    assert inside.all() and strays == []


# --- item 8: huge images ---------------------------------------------------------

def _png_header_only(width, height) -> bytes:
    """A valid PNG of zeros, compressed as it streams (never held whole in memory)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    z = zlib.compressobj(1)
    rows = b"\0" * ((width + 1) * 500)
    idat = b"".join(z.compress(rows) for _ in range(height // 500)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_huge_png_refused_before_decoding(tmp_path):
    (tmp_path / "big.png").write_bytes(_png_header_only(12000, 12000))
    (tmp_path / "huge.png").write_bytes(_png_header_only(16000, 16000))
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child
    # forked from a big pytest process would report the parent's size.
    code = ("import re, sys, warnings; warnings.simplefilter('error')\n"
            "from host_stm32mp1 import readers\n"
            "for p in sys.argv[1:]:\n"
            "    (f,) = readers.read_file(p); print(type(f).__name__, f.reason)\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print('RSS_KB', hwm)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.png"), str(tmp_path / "huge.png")],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for line, side in zip(lines, (12000, 16000)):
        assert line == (f"Failure cannot read PNG file: PNG image of {side}x{side} is larger than a wafer map can be "
                        "(at most 4096 rows and columns)"), line
    # numpy + PIL import costs ~60 MB; decoding would have taken 144 MB and more.
    assert int(lines[-1].split()[1]) < 140 * 1024, lines[-1]


def test_huge_npy_refused_from_its_header(tmp_path):
    with open(tmp_path / "big.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, dict(descr="|u1", fortran_order=False, shape=(5000, 5000)))
    f = one(tmp_path / "big.npy")
    assert isinstance(f, readers.Failure) and "5000x5000 is larger than a wafer map can be" in f.reason


# --- items 12 and 17: no maps, empty files, folders -------------------------------

def test_zero_maps_empty_files_and_folders(tmp_path):
    np.save(tmp_path / "none.npy", np.zeros((0, 26, 26), np.uint8))
    np.savez(tmp_path / "none.npz", x=np.zeros((0, 5, 5), np.uint8))
    for name in ("e.npy", "e.json", "e.stdf", "e.xml", "e.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.npy").mkdir()
    (tmp_path / "plain").mkdir()
    for name in ("none.npy", "none.npz"):
        f = one(tmp_path / name)
        assert isinstance(f, readers.Failure) and f.reason == "the file holds no maps", f
    for name in ("e.npy", "e.json", "e.stdf", "e.xml", "e.png"):
        assert one(tmp_path / name).reason == "empty file (0 bytes)"
    for name in ("d.npy", "plain"):
        assert one(tmp_path / name).reason == "is a folder, not a map file"


# --- item 18: E142 and G85 BinCount; issue 21 item 8: DOCTYPE in any encoding ------

def e142_xml(maps, lot="LOT5", counts=True):
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<MapData xmlns="urn:semi-org:xsd.E142-1.V1005.SubstrateMap"><Layouts>']
    out += [f'<Layout LayoutId="Dev{i}" DefaultUnits="mm"><Dimension X="{m.shape[1]}" Y="{m.shape[0]}"/>'
            '</Layout>' for i, m in enumerate(maps)]
    out.append("</Layouts><Substrates>")
    out += [f'<Substrate SubstrateType="Wafer" SubstrateId="S{i}"><LotId>{lot}</LotId>'
            f'<ProductId>PRD</ProductId></Substrate>' for i in range(len(maps))]
    out.append("</Substrates><SubstrateMaps>")
    for i, m in enumerate(maps):
        c = (lambda k: f' BinCount="{int((m == k).sum())}"') if counts else (lambda k: "")
        out.append(f'<SubstrateMap SubstrateType="Wafer" SubstrateId="S{i}" LayoutSpecifier="Wafer/Dev{i}" '
                   'Orientation="0" OriginLocation="LowerLeft" AxisDirection="UpRight">'
                   '<Overlay MapName="BinCodeMap" MapVersion="1"><BinCodeMap BinType="HexaDecimal" '
                   f'NullBin="FF"><BinDefinitions><BinDefinition BinCode="01" BinQuality="Pass"{c(1)}/>'
                   f'<BinDefinition BinCode="1F" BinQuality="Fail"{c(2)}/></BinDefinitions>')
        codes = {0: "FF", 1: "01", 2: "1F"}
        out += ["<BinCode>" + "".join(codes[int(v)] for v in row) + "</BinCode>" for row in m]
        out.append("</BinCodeMap></Overlay></SubstrateMap>")
    out.append("</SubstrateMaps></MapData>")
    return "\n".join(out)


def test_e142_maps(tmp_path):
    maps = [wafer(11, 13, seed=5), wafer(8, 8, seed=6)]
    (tmp_path / "a.xml").write_text(e142_xml(maps))
    got = list(readers.read_file(tmp_path / "a.xml"))
    assert [np.array_equal(g.map, m) for g, m in zip(got, maps)] == [True, True]
    assert [(g.meta["lot_id"], g.meta["wafer_id"], g.meta["part"]) for g in got] == [
        ("LOT5", "S0", "PRD"), ("LOT5", "S1", "PRD")]
    bad = e142_xml(maps[:1]).replace('BinCount="', 'BinCount="1', 1)
    (tmp_path / "b.xml").write_text(bad)
    assert "BinCount=1" in one(tmp_path / "b.xml").reason
    (tmp_path / "c.xml").write_text(e142_xml(maps[:1]).replace('<Dimension X="13"', '<Dimension X="12"'))
    assert "is 11x12 devices" in one(tmp_path / "c.xml").reason


def test_g85_bincount_disagreeing_with_rows(tmp_path):
    m = wafer(seed=7)
    good = g85_xml([m])
    n_fail = int((m == 2).sum())
    (tmp_path / "g.xml").write_text(good.replace(f'BinCount="{n_fail}"', f'BinCount="{n_fail + 1}"'))
    f = one(tmp_path / "g.xml")
    assert isinstance(f, readers.Failure) and f"BinCount={n_fail + 1}, the rows hold {n_fail}" in f.reason


def test_g85_wafer_identity(tmp_path):
    (tmp_path / "g.xml").write_text(g85_xml([wafer(seed=8)]).replace('SubstrateId="W00"',
                                                                    'SubstrateId="S9" WaferId="WAF-3"'))
    g = one(tmp_path / "g.xml")
    assert (g.meta["lot_id"], g.meta["wafer_id"], g.meta["part"]) == ("LOT7", "WAF-3", "P1")


@pytest.mark.parametrize("encoding, bom", [("utf-8", b""), ("utf-16-le", b"\xff\xfe"),
                                           ("utf-16-be", b"\xfe\xff")])
def test_doctype_refused_in_any_encoding(tmp_path, encoding, bom):
    text = g85_xml([wafer(seed=9)]).replace('encoding="UTF-8"', 'encoding="UTF-16"' if bom else "")
    text = text.replace("<Maps", '<!DOCTYPE Maps [<!ENTITY a "01">]>\n<Maps', 1)
    (tmp_path / "d.xml").write_bytes(bom + text.encode(encoding))
    assert b"<!DOCTYPE" not in (tmp_path / "d.xml").read_bytes() or not bom
    f = one(tmp_path / "d.xml")
    assert isinstance(f, readers.Failure) and "DOCTYPE is refused" in f.reason, f.reason


def test_watch_reads_refuse_symlinks(tmp_path):
    np.save(tmp_path / "real.npy", np.ones((3, 3), np.uint8))
    (tmp_path / "link.npy").symlink_to(tmp_path / "real.npy")
    assert isinstance(one(tmp_path / "link.npy"), readers.Item)       # classify follows links
    f = one(tmp_path / "link.npy", follow_symlinks=False)
    assert isinstance(f, readers.Failure) and "symbolic link" in f.reason
