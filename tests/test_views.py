"""Test-time views (contract.views): a model exported with ``views: 8`` is
classified by the host as the summed integer logits of each map's eight
turns and flips, every map still one record, a failing view an error record
for its map."""
import json

import numpy as np
import pytest

from contract import export_dir, views
from contract.intmodel import IntModel, random_model
from contract.preprocess import to_model_input
from contract.spec import CNNSpec
from host_stm32mp1 import engine, readers
from protocol import wire as W
from protocol.results import ResultBatch
from dihedral import dihedral_by_index
from wq_service_helpers import run_host, service


def test_expand_gives_each_maps_eight_symmetries_next_to_each_other():
    x = np.random.default_rng(0).integers(0, 255, (3, 7, 7, 1), dtype=np.uint8)
    v = views.expand(x, 8)
    assert v.shape == (24, 7, 7, 1) and v.flags.c_contiguous
    for m in range(3):
        got = sorted(v[8 * m + k].tobytes() for k in range(8))
        want = sorted(s.tobytes() for s in dihedral_by_index(x[m]))
        assert got == want
        assert np.array_equal(v[8 * m], x[m])         # the identity first
    assert views.expand(x, 1) is x


def test_views_refuse_other_counts_and_non_square_maps():
    for bad in (0, 2, 4, 9, True, "8"):
        with pytest.raises(ValueError, match="views must be 1 or 8"):
            views.check(bad)
    with pytest.raises(ValueError, match="square"):
        views.expand(np.zeros((1, 4, 5), np.uint8), 8)
    with pytest.raises(ValueError, match="whole number of maps"):
        views.combine(np.zeros((12, 3), np.int32), 8)


def test_a_failing_view_makes_its_map_an_error_and_nothing_else():
    rng = np.random.default_rng(1)
    logits = rng.integers(-50, 50, (32, 5)).astype(np.int32)
    status = np.zeros(32, np.uint16)
    status[8 + 5] = W.E_BAD_SHAPE
    status[24 + 1], status[24 + 6] = W.E_INTERNAL, W.E_ACCELERATOR
    msgs = {13: "view 5 bad", 25: "first bad view of map 3", 30: "second"}
    st, cls, z, m = views.combine_records(status, logits, msgs, 8, W.OK)
    assert st.tolist() == [W.OK, W.E_BAD_SHAPE, W.OK, W.E_INTERNAL]
    assert m == {1: "view 5 bad", 3: "first bad view of map 3"}
    sums = logits.astype(np.int64).reshape(4, 8, 5).sum(1)
    assert np.array_equal(z[[0, 2]], sums[[0, 2]]) and not z[[1, 3]].any()
    assert cls[[0, 2]].tolist() == sums[[0, 2]].argmax(1).tolist()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("views")
    random_model(CNNSpec.uniform(4, 4), seed=5).save(d / "model")
    export_dir.read(d / "model").with_reject(None, 8)
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, size=(40, 30, 30)).astype(np.uint8)
    np.savez(d / "maps.npz", x=x, y=rng.integers(0, 9, size=40))
    return d


def test_export_records_views_and_rejects_a_bad_count(work, tmp_path):
    assert export_dir.read(work / "model").views == 8
    meta = json.loads((work / "model" / "model.json").read_text())
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text(json.dumps(dict(meta, views=3)))
    with pytest.raises(export_dir.ExportError, match="views must be 1 or 8"):
        export_dir.read(tmp_path / "m").views


def test_host_sums_the_boards_logits_over_the_eight_views(work):
    """Through the real service (reference backend) and the host CLI: each
    record's logits are the sum of the integer model's logits over the map's
    eight symmetries, computed here from index maps, and its class their argmax."""
    with service(work / "model", work) as (port, _):
        out = work / "r.json"
        proc = run_host(["classify", str(work / "maps.npz"), "--board", f"127.0.0.1:{port}",
                         "--model", str(work / "model"), "--batch", "16", "--out", str(out),
                         "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())["results"]
    model = IntModel.load(work / "model")
    with np.load(work / "maps.npz") as z:
        inputs = np.stack([to_model_input(m, model.spec.in_size) for m in z["x"]])
    assert len(res) == 40 and [r["id"] for r in res] == list(range(40))
    for r, x in zip(res, inputs):
        want = sum(model.forward(np.stack(dihedral_by_index(x))).astype(np.int64))
        assert r["status"] == "ok" and r["logits"] == want.tolist()
        assert r["class_index"] == int(np.argmax(want))


class ViewBoard:
    """A board client in this process: the integer model's logits per image,
    and an explicit error record for the images whose wire ids are in ``bad``."""
    timeout = connect_timeout = probe_timeout = 5.0
    name = "fake"
    on_connect = None

    def __init__(self, model, bad):
        self.model, self.bad, self.sock, self.sent = model, bad, object(), []

    def connect(self):
        pass

    def close(self):
        pass

    def ensure_weights(self, folder):
        return dict(backend="fake"), False

    def batch_size(self):
        return 64

    def infer_batch(self, images, ids):
        self.sent.append(len(ids))
        res = ResultBatch.empty(ids, len(self.model.spec.classes))
        res.classes[:], res.logits[:] = self.model.classify(images)
        for k, i in enumerate(ids):
            if i in self.bad:
                res.fail(k, W.E_ACCELERATOR, f"view {i % 8} of map {i // 8} stalled")
        return res


def test_engine_gives_every_map_one_record_when_a_view_fails(work):
    model = engine.Model.load(work / "model")
    with np.load(work / "maps.npz") as z:
        items = [readers.Item(source="maps.npz", index=i, map=m, label=None)
                 for i, m in enumerate(z["x"][:20])]
    run = engine.prepare(items, model, quiet=True)
    board = ViewBoard(IntModel.load(work / "model"), bad={8 * 3 + 2, 8 * 17 + 7})
    engine.send(run, board, model, None)
    assert board.sent == [64, 64, 32]      # the board's 64 images a request: 8 maps of 8 views
    assert [r["id"] for r in run.records] == list(range(20))
    errors = {r["id"]: r["error"] for r in run.records if r["status"] == "error"}
    assert sorted(errors) == [3, 17]
    assert errors[3]["name"] == "ACCELERATOR" and "view 2 of map 3 stalled" in errors[3]["message"]
    assert all(r["status"] == "ok" and r["class_index"] is not None
               for r in run.records if r["id"] not in errors)
