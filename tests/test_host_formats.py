"""SEMI G85 XML, STDF V4 and WM-811K readers, on files written here byte by byte."""
import gzip
import json
import struct

import numpy as np
import pytest

from host_stm32mp1 import readers


def wafer(rows=9, cols=11, seed=0):
    """A round wafer: 0 outside, 1/2 inside; a fail cluster makes it non-trivial."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:rows, :cols]
    inside = ((yy - (rows - 1) / 2) / (rows / 2)) ** 2 + ((xx - (cols - 1) / 2) / (cols / 2)) ** 2 <= 1
    m = np.where(inside, 1, 0).astype(np.uint8)
    m[inside & (rng.random((rows, cols)) < 0.3)] = 2
    return m


# --- SEMI G85 ---------------------------------------------------------------

def g85_xml(maps, ns=True, hexa=True, sep=" ", extra_bin=""):
    codes = {0: "FF", 1: "01", 2: "0A"} if hexa else {0: ".", 1: "1", 2: "X"}
    xmlns = ' xmlns="urn:semi-org:xsd.E142-1.V1005.SubstrateMap"' if ns else ""
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<Maps{xmlns}>']
    for i, m in enumerate(maps):
        out.append(f'<Map SubstrateType="Wafer" SubstrateId="W{i:02d}" FormatRevision="SEMI G85 0703">'
                   f'<Device ProductId="P1" LotId="LOT7" Orientation="0" OriginLocation="0" '
                   f'Rows="{m.shape[0]}" Columns="{m.shape[1]}" NullBin="{codes[0]}" '
                   f'BinType="{"HexaDecimal" if hexa else "ASCII"}">'
                   f'<ReferenceDevice ReferenceDeviceX="0" ReferenceDeviceY="0"/>'
                   f'<Bin BinCode="{codes[1]}" BinCount="{int((m == 1).sum())}" BinQuality="Pass" '
                   f'BinDescription="good"/>'
                   f'<Bin BinCode="{codes[2]}" BinCount="{int((m == 2).sum())}" BinQuality="Fail"/>'
                   f'{extra_bin}<Data MapName="Map" MapVersion="1">')
        for row in m:
            out.append("<Row><![CDATA[" + sep.join(codes[int(v)] for v in row) + "]]></Row>")
        out.append("</Data></Device></Map>")
    out.append("</Maps>")
    return "\n".join(out)


def test_g85_hex_and_ascii_maps(tmp_path):
    maps = [wafer(seed=1), wafer(7, 13, seed=2)]
    (tmp_path / "a.xml").write_text(g85_xml(maps))
    got = list(readers.read_file(tmp_path / "a.xml"))
    assert [type(g) for g in got] == [readers.Item, readers.Item]
    for g, m in zip(got, maps):
        assert np.array_equal(g.map, m)
    assert got[1].meta["SubstrateId"] == "W01" and got[0].meta["LotId"] == "LOT7"
    assert got[0].meta["reference_devices"] == [(0, 0)]
    assert len(got[0].file_sha256) == 64
    (tmp_path / "b.g85").write_text(g85_xml(maps[:1], ns=False, hexa=False, sep=""))
    (g,) = readers.read_file(tmp_path / "b.g85")
    assert np.array_equal(g.map, maps[0])


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s[: len(s) // 2], "malformed XML"),
    (lambda s: s.replace("<Maps", "<Wafers", 1).replace("</Maps>", "</Wafers>"), "not a SEMI G85"),
    (lambda s: s.replace('BinCode="0A"', 'BinCode="0B"'), "not declared"),
    (lambda s: s.replace('Rows="9"', 'Rows="10"'), "Rows=10"),
    (lambda s: s.replace('BinQuality="Fail"', 'BinQuality="Maybe"'), "BinQuality"),
    (lambda s: s.replace("<?xml", '<!DOCTYPE x [<!ENTITY a "b">]>\n<?xml', 1), "DOCTYPE"),
    (lambda s: "\x00\xff garbage" + s, "malformed XML"),
])
def test_g85_corrupt_files_fail_clearly(tmp_path, mutate, message):
    p = tmp_path / "bad.xml"
    p.write_text(mutate(g85_xml([wafer(seed=3)])), encoding="latin-1")
    (f,) = readers.read_file(p)
    assert isinstance(f, readers.Failure) and message in f.reason, f.reason
    assert f.reason.startswith("cannot read XML file")


# --- STDF V4 ----------------------------------------------------------------

def _cn(s):
    b = s.encode()
    return bytes([len(b)]) + b


class Stdf:
    """Writes STDF V4 records as the spec lays them out (V4-2007 tables)."""

    def __init__(self, cpu=2):
        self.e = "<" if cpu == 2 else ">"
        self.buf = bytearray()
        self.rec(0, 10, bytes([cpu, 4]))                                   # FAR

    def rec(self, typ, sub, body):
        self.buf += struct.pack(self.e + "HBB", len(body), typ, sub) + body

    def mir(self, lot):
        self.rec(1, 10, struct.pack(self.e + "IIB", 1700000000, 1700000001, 1) + b"P  "
                 + struct.pack(self.e + "H", 0) + b" " + _cn(lot) + _cn("PART") + _cn("NODE"))

    def wir(self, wafer_id, head=1):
        self.rec(2, 10, struct.pack(self.e + "BBI", head, 255, 1700000002) + _cn(wafer_id))

    def wrr(self, wafer_id, n, good, head=1):
        self.rec(2, 20, struct.pack(self.e + "BBIIIIII", head, 255, 1700000009, n, 0, 0, good, 0)
                 + _cn(wafer_id))

    def part(self, x, y, hbin, flag=None, head=1, site=0):
        flag = (0 if hbin == 1 else 0x08) if flag is None else flag
        self.rec(5, 10, struct.pack(self.e + "BB", head, site))             # PIR
        self.rec(15, 10, struct.pack(self.e + "IBBB", 1, head, site, 0) + struct.pack(self.e + "f", 1.5))  # PTR
        self.rec(5, 20, struct.pack(self.e + "BBBHHHhhI", head, site, flag, 1, hbin, hbin, x, y, 12)
                 + _cn(f"{x},{y}") + _cn("") + bytes([0]))                # PRR

    def hbr(self, num, pf):
        self.rec(1, 40, struct.pack(self.e + "BBHI", 255, 0, num, 1) + pf.encode() + _cn(f"bin{num}"))

    def mrr(self):
        self.rec(1, 20, struct.pack(self.e + "I", 1700000010))

    def bytes(self):
        return bytes(self.buf)


def stdf_for(maps, cpu=2, x0=-5, y0=3, fail_bin=7):
    s = Stdf(cpu)
    s.mir("LOT9")
    for i, m in enumerate(maps):
        s.wir(f"W{i}")
        for (r, c), v in np.ndenumerate(m):
            if v:
                s.part(x0 + c, y0 + r, 1 if v == 1 else fail_bin)
        s.wrr(f"W{i}", int((m > 0).sum()), int((m == 1).sum()))
    s.hbr(1, "P")
    s.hbr(fail_bin, "F")
    s.mrr()
    return s.bytes()


def bbox(m):
    """The map an STDF reader can rebuild: the bounding box of the dies."""
    rows, cols = np.nonzero(m)
    return m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


@pytest.mark.parametrize("cpu", [2, 1])
def test_stdf_wafers_to_bin_maps(tmp_path, cpu):
    maps = [wafer(seed=4), wafer(12, 10, seed=5)]
    (tmp_path / "lot.stdf").write_bytes(stdf_for(maps, cpu))
    got = list(readers.read_file(tmp_path / "lot.stdf"))
    assert all(isinstance(g, readers.Item) for g in got), got
    assert len(got) == 2
    for g, m in zip(got, maps):
        assert np.array_equal(g.map, bbox(m))
    assert got[1].meta["wafer_id"] == "W1" and got[0].meta["lot_id"] == "LOT9"
    assert got[0].meta["x_min"] == -5 + np.nonzero(maps[0])[1].min()
    with gzip.open(tmp_path / "lot.stdf.gz", "wb") as f:
        f.write(stdf_for(maps, cpu))
    assert [np.array_equal(g.map, bbox(m))
            for g, m in zip(readers.read_file(tmp_path / "lot.stdf.gz"), maps)] == [True, True]


def test_stdf_pass_fail_rules_and_retest(tmp_path):
    s = Stdf()
    s.wir("W")
    s.part(0, 0, 1)                 # flag says pass
    s.part(1, 0, 5, flag=0x08)      # flag says fail
    s.part(2, 0, 3, flag=0x10)      # flag invalid -> HBR says bin 3 passes
    s.part(3, 0, 4, flag=0x10)      # flag invalid, no HBR -> only bin 1 would pass
    s.part(1, 0, 1, flag=0x00 | 0x01)  # retest of (1,0): now passes
    s.wrr("W", 5, 3)
    s.hbr(3, "P")
    s.mrr()
    (tmp_path / "r.std").write_bytes(s.bytes())
    (g,) = readers.read_file(tmp_path / "r.std")
    assert g.map.tolist() == [[1, 1, 1, 2]]
    (g,) = readers.read_file(tmp_path / "r.std", pass_bins={4})
    assert g.map.tolist() == [[2, 2, 2, 1]]


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-7], "truncated"),
    (lambda b: b[: len(b) // 2 + 1], "truncated"),
    (lambda b: b"\x07\x00\x05\x14garbage" + b, "does not start with a FAR"),
    (lambda b: b[:4] + bytes([2, 3]) + b[6:], "version 3"),
    (lambda b: b[:2], "too short"),
])
def test_stdf_corrupt_files_fail_clearly(tmp_path, mutate, message):
    p = tmp_path / "bad.stdf"
    p.write_bytes(mutate(stdf_for([wafer(seed=6)])))
    (f,) = readers.read_file(p)
    assert isinstance(f, readers.Failure) and message in f.reason, f.reason


def test_stdf_without_coordinates_is_an_error(tmp_path):
    s = Stdf()
    s.part(-32768, -32768, 1)
    (tmp_path / "ft.stdf").write_bytes(s.bytes())
    (f,) = readers.read_file(tmp_path / "ft.stdf")
    assert "no part results" in f.reason


# --- WM-811K -----------------------------------------------------------------

def test_wm811k_json_rows(tmp_path):
    m1, m2 = wafer(seed=8), wafer(30, 27, seed=9)
    rows = [dict(waferMap=m1.tolist(), failureType=[["Center"]], lotName="lot1", waferIndex=1.0,
                 dieSize=1683.0, trianTestLabel=[["Training"]]),
            dict(waferMap=m2.tolist(), failureType=[], lotName="lot1", waferIndex=2.0)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    a, b = readers.read_file(tmp_path / "rows.json")
    assert np.array_equal(a.map, m1) and a.label_name == "Center" and a.label is None
    assert b.label_name is None and a.meta["trianTestLabel"] == "Training"
    (tmp_path / "one.json").write_text(json.dumps(dict(waferMap=m1.tolist(), failureType="Scratch")))
    (g,) = readers.read_file(tmp_path / "one.json")
    assert g.label_name == "Scratch"
    (tmp_path / "bad.json").write_text(json.dumps([dict(waferMap=[[0, 1], [2]])]))
    (tmp_path / "cut.json").write_text(json.dumps(rows)[:100])
    (tmp_path / "big.json").write_text(json.dumps([dict(waferMap=[[0, 7]])]))
    for name, msg in (("bad", "rectangular"), ("cut", "Expecting"), ("big", "values must be")):
        (f,) = readers.read_file(tmp_path / f"{name}.json")
        assert isinstance(f, readers.Failure) and msg in f.reason, f.reason


def test_wm811k_pickle_needs_opt_in_and_pandas(tmp_path):
    import pickle

    (tmp_path / "LSWMD.pkl").write_bytes(pickle.dumps({"waferMap": [[0, 1]]}))
    (f,) = readers.read_file(tmp_path / "LSWMD.pkl")
    assert isinstance(f, readers.Failure) and "--allow-pickle" in f.reason
    (f,) = readers.read_file(tmp_path / "LSWMD.pkl", allow_pickle=True)
    try:
        import pandas  # noqa: F401
    except ImportError:
        assert "needs pandas" in f.reason
    else:
        assert isinstance(f, readers.Failure) and "DataFrame" in f.reason


def test_pickle_dataframe_when_pandas_is_there(tmp_path):
    pd = pytest.importorskip("pandas")
    m = wafer(seed=10)
    df = pd.DataFrame({"waferMap": [m, m * 0 + 1], "failureType": [np.array([["Donut"]]), np.array([])],
                       "lotName": ["a", "a"]})
    df.to_pickle(tmp_path / "LSWMD.pkl")
    a, b = readers.read_file(tmp_path / "LSWMD.pkl", allow_pickle=True)
    assert np.array_equal(a.map, m) and a.label_name == "Donut" and b.label_name is None


def test_batch_goes_on_after_corrupt_files(tmp_path):
    good = wafer(seed=11)
    (tmp_path / "a.xml").write_text(g85_xml([good])[:-40])
    (tmp_path / "b.stdf").write_bytes(stdf_for([good])[:-3])
    (tmp_path / "c.stdf").write_bytes(b"\xde\xad\xbe\xef" * 50)
    (tmp_path / "d.xml").write_text(g85_xml([good]))
    (tmp_path / "e.stdf").write_bytes(stdf_for([good]))
    got = list(readers.read_files([tmp_path / n for n in ("a.xml", "b.stdf", "c.stdf", "d.xml", "e.stdf")]))
    assert [type(g).__name__ for g in got] == ["Failure"] * 3 + ["Item"] * 2
    assert np.array_equal(got[3].map, good) and np.array_equal(got[4].map, bbox(good))
