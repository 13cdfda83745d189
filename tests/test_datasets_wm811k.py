"""quant.datasets.wm811k on small LSWMD-format pickles that the tests build.

Old pandas (0.17/0.19) is not installable on this Python, so the "old"
pickles are written byte by byte the way those versions wrote a DataFrame:
protocol 2, Python 2 ``str`` (BINSTRING) for text and array bytes, NEWOBJ for
the DataFrame and its BlockManager, the BlockManager's 0.14.1 4-tuple state,
and ``_new_Index(Index/Int64Index, {...})`` under the old module paths.
"""
import copyreg
import io
import pickle
import struct
import types

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from contract.preprocess import CATEGORY_CODES  # noqa: E402
from quant.datasets import wm811k  # noqa: E402
from contract.spec import WAFER_CLASSES  # noqa: E402

# ---------------------------------------------------------------- the rows


def _rows(n=60, seed=0, unlabeled=6, file_split=True):
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("waferMap", "dieSize", "lotName", "waferIndex", "trianTestLabel", "failureType")}
    for i in range(n):
        h, w = int(rng.integers(20, 70)), int(rng.integers(20, 50))
        m = rng.integers(0, 3, (h, w)).astype(np.uint8)
        k = i % 9
        labeled = i >= unlabeled
        cols["waferMap"].append(m)
        cols["dieSize"].append(float(h * w))
        cols["lotName"].append(f"lot{i // 25}")
        cols["waferIndex"].append(float(i % 25 + 1))
        split = "Training" if i % 4 else "Test"
        cols["trianTestLabel"].append(np.array([[split]]) if labeled and file_split else np.zeros((0, 0)))
        cols["failureType"].append(np.array([[WAFER_CLASSES[k]]]) if labeled else np.zeros((0, 0)))
    return cols


def _modern_pickle(tmp_path, **kw):
    path = tmp_path / "modern.pkl"
    pd.DataFrame(_rows(**kw)).to_pickle(path)
    return path


# --------------------------------------------------- the old-pandas writer


class _Obj:
    """An object the writer emits as NEWOBJ(legacy class) + BUILD(state)."""

    def __init__(self, state):
        self.state = state


def _legacy_class(module, name):
    return type(name, (_Obj,), {"_legacy_name": (module, name)})


def _legacy_func(module, name):
    def f():
        raise AssertionError("stand-in")
    f._legacy_name = (module, name)
    return f


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args


class _OldPandasPickler(pickle._Pickler):
    """Protocol 2 with Python 2 strings and global names taken from stand-ins."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_global(self, obj, name=None):
        legacy = getattr(obj, "_legacy_name", None)
        if legacy is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{legacy[0]}\n{legacy[1]}\n".encode("ascii"))
        self.memoize(obj)

    def save_py2_str(self, obj):
        b = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str
    dispatch[types.FunctionType] = save_global

    def reducer_override(self, obj):
        if isinstance(obj, _Obj):
            return copyreg.__newobj__, (type(obj),), obj.state
        if isinstance(obj, _Reduce):
            return obj.func, obj.args
        return NotImplemented


def _old_pickle_bytes(cols, index_module="pandas.indexes"):
    """The DataFrame of ``cols`` as pandas 0.19 (``pandas.indexes``) or 0.17
    (``index_module='pandas.core.index'``) wrote it from Python 2."""
    base = index_module if index_module == "pandas.core.index" else index_module + ".base"
    numeric = index_module if index_module == "pandas.core.index" else index_module + ".numeric"
    new_index = _legacy_func(base, "_new_Index")
    index_cls, int64_cls = _legacy_class(base, "Index"), _legacy_class(numeric, "Int64Index")
    frame_cls = _legacy_class("pandas.core.frame", "DataFrame")
    manager_cls = _legacy_class("pandas.core.internals", "BlockManager")

    names = list(cols)
    n = len(cols["waferMap"])
    columns = _Reduce(new_index, (index_cls, {"data": np.array(names, dtype=object), "name": None}))
    rows = _Reduce(new_index, (int64_cls, {"data": np.arange(n, dtype=np.int64), "name": None}))
    floats = [names.index("dieSize"), names.index("waferIndex")]
    objects = [i for i in range(len(names)) if i not in floats]
    fblock = np.array([cols[names[i]] for i in floats], dtype=np.float64)
    oblock = np.empty((len(objects), n), dtype=object)
    for j, i in enumerate(objects):
        for r in range(n):
            oblock[j, r] = cols[names[i]][r]
    blocks = [dict(values=fblock, mgr_locs=np.array(floats, dtype=np.int64)),
              dict(values=oblock, mgr_locs=np.array(objects, dtype=np.int64))]
    items = [np.array([names[i] for i in floats], dtype=object), np.array([names[i] for i in objects], dtype=object)]
    state = ([columns, rows], [fblock, oblock], items, {"0.14.1": {"axes": [columns, rows], "blocks": blocks}})
    frame = frame_cls({"_data": manager_cls(state), "_typ": "dataframe", "_metadata": []})
    buf = io.BytesIO()
    _OldPandasPickler(buf, protocol=2).dump(frame)
    return buf.getvalue()


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("index_module", ["pandas.indexes", "pandas.core.index"])
def test_old_pandas_pickle_needs_the_shim(tmp_path, index_module):
    cols = _rows()
    data = _old_pickle_bytes(cols, index_module)
    assert b"pandas.core.internals\nBlockManager" in data and index_module.encode() in data
    assert b"\x80\x02" == data[:2]  # protocol 2
    with pytest.raises(ModuleNotFoundError, match=index_module.rsplit(".", 1)[0] if index_module == "pandas.core.index" else "pandas.indexes"):
        pickle.loads(data)
    path = tmp_path / "old.pkl"
    path.write_bytes(data)
    if index_module == "pandas.core.index":
        # Not in pandas' own table: plain read_pickle gives up.
        with pytest.raises(ModuleNotFoundError, match="pandas.core.index"):
            pd.read_pickle(path)
    df = wm811k.read_frame(path)
    assert list(df.columns) == list(cols) and len(df) == len(cols["waferMap"])
    assert df.index.dtype == np.int64
    for a, b in zip(df["waferMap"], cols["waferMap"]):
        assert np.array_equal(a, b)
    assert np.allclose(df["dieSize"].to_numpy(float), cols["dieSize"])
    assert wm811k._cell(df["failureType"].iloc[-1]) == wm811k._cell(cols["failureType"][-1])
    assert wm811k._cell(df["failureType"].iloc[0]) is None


def test_shim_only_path_reads_old_bytes():
    cols = _rows(n=12)
    df = wm811k.loads_legacy(_old_pickle_bytes(cols))
    assert [wm811k._cell(v) for v in df["trianTestLabel"]][6:] == [
        "Test" if i % 4 == 0 else "Training" for i in range(6, 12)]


def test_modern_and_old_files_load_identically(tmp_path):
    old = tmp_path / "old.pkl"
    old.write_bytes(_old_pickle_bytes(_rows()))
    a = wm811k.load(_modern_pickle(tmp_path), n_classes=9, size=32)
    b = wm811k.load(old, n_classes=9, size=32)
    for s in ("train", "test"):
        x, y = getattr(a, s), getattr(b, s)
        assert np.array_equal(x.maps, y.maps) and np.array_equal(x.labels, y.labels)


def test_file_split_classes_and_unlabeled(tmp_path):
    path = _modern_pickle(tmp_path)
    d9 = wm811k.load(path, n_classes=9)
    assert d9.split_source == "file" and d9.skipped == {"unlabeled": 6}
    assert len(d9.train.labels) + len(d9.test.labels) == 54
    assert all(r % 4 == 0 for r in d9.test.rows) and all(r % 4 for r in d9.train.rows)
    assert set(np.concatenate([d9.train.labels, d9.test.labels])) == set(range(9))
    assert d9.train.classes == WAFER_CLASSES
    d8 = wm811k.load(path, n_classes=8)
    assert d8.skipped == {"unlabeled": 6, "none (8 classes)": 6}
    assert d8.train.classes == WAFER_CLASSES[:8]
    assert 8 not in d8.train.labels and 8 not in d8.test.labels
    for d in (d8, d9):  # labels index WAFER_CLASSES: row i has class i % 9
        for part in (d.train, d.test):
            assert np.array_equal(part.labels, part.rows % 9)
    # Raw maps come back untouched when no size is asked.
    df = pd.read_pickle(path)
    for m, r in zip(d9.train.maps, d9.train.rows):
        assert np.array_equal(m, df["waferMap"].iloc[r])


def test_stratified_split_when_file_has_none(tmp_path):
    path = _modern_pickle(tmp_path, n=186, file_split=False)
    a = wm811k.load(path, n_classes=9, test_fraction=0.25, seed=3)
    assert a.split_source == "stratified"
    counts_test = np.bincount(a.test.labels, minlength=9)
    counts_all = counts_test + np.bincount(a.train.labels, minlength=9)
    assert np.all(np.abs(counts_test - 0.25 * counts_all) <= 1)
    assert not set(a.train.rows) & set(a.test.rows)
    b = wm811k.load(path, n_classes=9, test_fraction=0.25, seed=3)
    assert np.array_equal(a.test.rows, b.test.rows)
    c = wm811k.load(path, n_classes=9, test_fraction=0.25, seed=4)
    assert not np.array_equal(a.test.rows, c.test.rows)


def test_limits(tmp_path):
    path = _modern_pickle(tmp_path, n=300, unlabeled=0)
    d = wm811k.load(path, n_classes=9, max_per_class=5)
    assert np.bincount(d.train.labels, minlength=9).max() == 5
    assert np.bincount(d.test.labels, minlength=9).max() <= 5
    d = wm811k.load(path, n_classes=9, limit=17)
    assert len(d.train.labels) == 17 and len(d.test.labels) == 17


def test_resize_keeps_die_categories(tmp_path):
    path = _modern_pickle(tmp_path)
    d = wm811k.load(path, n_classes=9, size=42)
    assert d.train.maps.shape == (len(d.train.labels), 42, 42, 1) and d.train.maps.dtype == np.uint8
    assert set(np.unique(d.train.maps)) <= set(CATEGORY_CODES.tolist())
    # A 2x upscale of a map is the map's own codes, each repeated.
    m = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    df = pd.DataFrame({"waferMap": [m], "failureType": [np.array([["Loc"]])],
                       "trianTestLabel": [np.array([["Training"]])]})
    up = wm811k.from_frame(df, size=4).train.maps[0, :, :, 0]
    assert np.array_equal(up, np.kron(CATEGORY_CODES[m], np.ones((2, 2), np.uint8)))


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="waferMap"):
        wm811k.from_frame(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="8 or 9"):
        wm811k.from_frame(pd.DataFrame({"waferMap": [], "failureType": []}), n_classes=7)


def test_one_command_trains_from_an_old_pickle(tmp_path):
    """``python -m quant.train --data LSWMD.pkl`` (what ``make train DATA=`` runs):
    the old-pandas file in, a W4A4 checkpoint and its report out, on the
    eight defect classes with the file's own split and ``--limit`` applied."""
    pytest.importorskip("torch")
    from quant import train as tr

    path = tmp_path / "LSWMD.pkl"
    path.write_bytes(_old_pickle_bytes(_rows(n=120)))
    out = tmp_path / "run"
    assert tr.main(["--data", str(path), "--out", str(out), "--eight-classes", "--limit", "60",
                    "--fp-epochs", "1", "--qat-epochs", "1", "--width", "4", "--batch", "16"]) == 0
    import json

    m = json.loads((out / "metrics.json").read_text())
    assert set(m["qat"]["per_class"]) == set(WAFER_CLASSES[:8])
    assert sum(c["support"] for c in m["qat"]["per_class"].values()) <= 60
    q = tr.load_checkpoint(out / "checkpoint.pt")
    assert q.spec.classes == WAFER_CLASSES[:8] and q.spec.name == "wmcnn_4w4a"
    assert "confusion" in (out / "report.html").read_text()
