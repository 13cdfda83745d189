"""quant.datasets.stream: LSWMD files streamed into memory-mapped caches.

Tested on generated files with the LSWMD structure (pickle protocols 2, 4 and
5; unlabelled rows as empty arrays) and on the shared numpy-2 sample; the
2 GB original belongs in bench/wm811k_stream.py, not here.
"""
import argparse
import pickle

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from contract.preprocess import to_model_input  # noqa: E402
from quant.datasets import stream  # noqa: E402
from contract.spec import WAFER_CLASSES  # noqa: E402
from shared_data import REAL_NP2  # noqa: E402

NP2 = REAL_NP2


def lswmd_frame(n=120, seed=0, unlabelled_every=4, test_every=5):
    """A DataFrame laid out as LSWMD.pkl: nested label cells, empty arrays when unlabelled."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("waferMap", "dieSize", "lotName", "waferIndex", "trianTestLabel", "failureType")}
    for i in range(n):
        h, w = int(rng.integers(25, 90)), int(rng.integers(25, 70))
        cols["waferMap"].append(rng.integers(0, 3, (h, w)).astype(np.uint8))
        cols["dieSize"].append(float(h * w))
        cols["lotName"].append(f"lot{i // 25}")
        cols["waferIndex"].append(float(i % 25 + 1))
        labelled = i % unlabelled_every != 0
        split = "Test" if i % test_every == 0 else "Training"
        cols["trianTestLabel"].append(np.array([[split]]) if labelled else np.zeros((0, 0)))
        cols["failureType"].append(np.array([[WAFER_CLASSES[i % 9]]]) if labelled else np.zeros((0, 0)))
    return pd.DataFrame(cols)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cache_equals_the_host_preprocessing(tmp_path, protocol):
    df = lswmd_frame()
    pkl = tmp_path / "lswmd.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(df, f, protocol=protocol)
    meta = stream.build_cache(pkl, tmp_path / "cache", sizes=(24, 40))
    assert meta["rows"] == 120 and meta["unlabelled"] == 30 and meta["labelled"] == 90
    c = stream.open_cache(tmp_path / "cache")
    for size in (24, 40):
        mm = c.maps(size)
        assert isinstance(mm, np.memmap) and mm.shape == (120, size, size, 1)
        for i in range(0, 120, 7):
            assert np.array_equal(mm[i], to_model_input(df["waferMap"].iloc[i], size)), (size, i)
    tr, te = c.split()
    assert not set(tr) & set(te)
    assert all(i % 5 == 0 for i in te) and all(i % 4 != 0 for i in (*tr, *te))
    want = [WAFER_CLASSES.index(df["failureType"].iloc[i][0][0]) for i in tr]
    assert c.labels[tr].tolist() == want
    with pytest.raises(ValueError, match="no cache at 32x32"):
        c.maps(32)


def test_raw_map_buffers_are_not_kept(tmp_path):
    # The memo must not keep what the pickle carried: a second full copy.
    memo = stream._Memo()
    memo[0] = bytes(10_000)
    memo[1] = bytearray(10_000)
    memo[2] = b"small"
    memo[3] = (1, (100, 100), "u1", False, bytes(10_000))  # an array's state tuple
    assert list(memo) == [2] and memo[2] == b"small"
    # and the frame the unpickler returns holds row numbers, not maps
    df = lswmd_frame(30)
    pkl = tmp_path / "f.pkl"
    df.to_pickle(pkl)
    cls = stream._stream_unpickler_class()
    seen = []
    with open(pkl, "rb") as f:
        up = cls(f)
        up.sink = lambda m: (seen.append(m.shape), len(seen) - 1)[1]
        got = up.load()
    assert list(got["waferMap"]) == list(range(30))
    assert seen == [m.shape for m in df["waferMap"]]
    # label cells come back as the string they hold (or None), not as a 1 KB array object each
    cells = list(got["failureType"]) + list(got["trianTestLabel"])
    assert all(c is None or type(c) is str for c in cells) and any(type(c) is str for c in cells)


@pytest.mark.skipif(not NP2.exists(), reason=f"{NP2} is absent")
def test_numpy2_sample_streams(tmp_path):
    meta = stream.build_cache(NP2, tmp_path / "c", sizes=(32,))
    assert meta["rows"] == 300 and meta["unlabelled"] == 0 and sum(meta["class_counts"]) == 300
    from quant.datasets import wm811k

    df = wm811k.read_frame(NP2)
    mm = stream.open_cache(tmp_path / "c").maps(32)
    for i in (0, 150, 299):
        assert np.array_equal(mm[i], to_model_input(df["waferMap"].iloc[i], 32))


def test_training_reads_the_cache_by_batches(tmp_path):
    torch = pytest.importorskip("torch")
    from quant import traindata
    from quant.fit import fit, predict_logits
    from quant.floatnet import FloatNet
    from contract.spec import CNNSpec

    pkl = tmp_path / "lswmd.pkl"
    lswmd_frame(90).to_pickle(pkl)
    stream.main([str(pkl), "--out", str(tmp_path / "c"), "--sizes", "16"])
    args = argparse.Namespace(data=tmp_path / "c", size=16, eight_classes=False, seed=0, family="wmcnn")
    x, y, xt, yt = traindata.load_data(args)
    assert isinstance(x, stream.Rows) and x.shape[1:] == (16, 16, 1)
    assert np.array_equal(x[np.array([3, 0])], np.stack([x[3], x[0]]))
    torch.manual_seed(0)
    net = fit(FloatNet(CNNSpec.uniform(4, 4, in_size=16, channels=(4, 4))), x, y, 1, 0, batch=16)
    assert predict_logits(net, xt).shape == (len(yt), 9)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_shared_array_is_kept_and_a_shared_map_refused(tmp_path, protocol):
    # The first pass knows which memo entries a GET reads: a small array that
    # every row shares is kept and loads; a map in two cells, which the sink
    # has handed on, is refused in one sentence rather than loaded wrong.
    df = lswmd_frame(20)
    shared = np.zeros((2, 2))
    df["dieSize"] = [shared] * len(df)          # one array object in every cell: pickled once, then GET
    pkl = tmp_path / "shared.pkl"
    df.to_pickle(pkl, protocol=protocol)
    meta = stream.build_cache(pkl, tmp_path / "c", sizes=(16,))
    assert meta["rows"] == 20 and meta["labelled"] == 15
    df = lswmd_frame(20)
    df["waferMap"] = [df["waferMap"].iloc[0]] * len(df)
    df.to_pickle(pkl, protocol=protocol)
    with pytest.raises(ValueError, match="refers back to a wafer map"):
        stream.build_cache(pkl, tmp_path / "c2", sizes=(16,))


def test_without_the_first_pass_a_read_back_array_is_refused(tmp_path, monkeypatch):
    # A file whose opcodes cannot be scanned falls back to keeping all but
    # arrays and buffers; reading one of those back is then an error.
    monkeypatch.setattr(stream, "memo_reads", lambda f: None)
    df = lswmd_frame(20)
    df["dieSize"] = [np.zeros((2, 2))] * len(df)
    pkl = tmp_path / "shared.pkl"
    df.to_pickle(pkl)
    with pytest.raises(ValueError, match="refers back"):
        stream.build_cache(pkl, tmp_path / "c", sizes=(16,))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_unpicklers_bookkeeping_does_not_grow_with_the_rows(tmp_path, protocol):
    # What the unpickler holds besides the frame: the memo entries a GET reads
    # (the same for 40 rows as for 160) and one string object a lot name.
    held = {}
    for n in (40, 160):
        pkl = tmp_path / f"f{n}.pkl"
        lswmd_frame(n).to_pickle(pkl, protocol=protocol)
        cls = stream._stream_unpickler_class()
        with open(pkl, "rb") as f:
            up = cls(f, reads=stream.memo_reads(f))
            up.sink = lambda m, c=iter(range(n)): next(c)
            got = up.load()
        held[n] = len(up.memo)
        lots = got["lotName"].tolist()
        assert len({id(v) for v in lots}) == len(set(lots)) == (n + 24) // 25
    assert held[40] == held[160] and held[40] < 40


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_shared_label_cell_is_read_once_and_kept(tmp_path, protocol):
    # A label cell becomes a string, which the memo keeps, so a file that
    # refers back to it still loads, with the right label in every row.
    df = lswmd_frame(20)
    df["failureType"] = [np.array([["Center"]])] * len(df)
    pkl = tmp_path / "shared.pkl"
    df.to_pickle(pkl, protocol=protocol)
    meta = stream.build_cache(pkl, tmp_path / "c", sizes=(16,))
    assert meta["class_counts"][0] == 20


def test_the_memory_bench_reports_growth_a_row(tmp_path):
    # The figures themselves are machine-dependent and belong to the bench;
    # this checks that it measures both loaders on each file and fits the growth.
    import json

    from bench import wm811k_stream

    assert wm811k_stream.main(["--rows", "200,400", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "wm811k_stream.json").read_text())
    assert [r["stream"]["rows"] for r in out["runs"]] == [200, 400]
    assert all(r[k]["peak_rss_mib"] > 0 for r in out["runs"] for k in ("read_frame", "stream"))
    assert set(out["growth"]) == {"read_frame", "stream"}
    assert all("bytes_per_row" in g and "mib_at_811k_rows" in g for g in out["growth"].values())


def test_an_old_pandas_file_streams(tmp_path):
    # pandas 0.19 (the original LSWMD.pkl's writer) pickles each block's
    # values twice in the BlockManager state, the second time as a GET of
    # the first: the object block of maps and labels is read back. Keeping
    # only the arrays a file reads back is what lets such a file stream.
    from test_datasets_wm811k import _old_pickle_bytes, _rows

    cols = _rows()
    pkl = tmp_path / "old.pkl"
    pkl.write_bytes(_old_pickle_bytes(cols))
    meta = stream.build_cache(pkl, tmp_path / "c", sizes=(32,))
    assert meta["rows"] == 60 and meta["labelled"] == 54 and meta["unlabelled"] == 6
    c = stream.open_cache(tmp_path / "c")
    mm = c.maps(32)
    for i in range(0, 60, 7):
        assert np.array_equal(mm[i], to_model_input(cols["waferMap"][i], 32)), i
    assert c.labels[6:].tolist() == [i % 9 for i in range(6, 60)]
    tr, te = c.split()
    assert sorted(te) == [i for i in range(6, 60) if i % 4 == 0]
