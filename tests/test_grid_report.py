"""quant.grid_report on a tiny quant.train run of the real numpy-2 sample."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quant import grid_report as G
from quant import train as tr
from shared_data import REAL_NP2, require


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pkl = require(REAL_NP2)
    d = tmp_path_factory.mktemp("run")
    tr.run(tr.parse_args(["--data", str(pkl), "--size", "16", "--fp-epochs", "1", "--qat-epochs", "1",
                          "--views", "8", "--seed", "0", "--out", str(d)]))
    return d


def test_bands_by_hand():
    idx, names = G.bands(np.array([5, 29, 30, 47, 48, 200]), [48, 30])
    assert names == ["<30", "30-47", ">=48"]
    assert idx.tolist() == [0, 0, 1, 1, 2, 2]


def test_bands_add_up_to_what_the_run_reported(run, tmp_path):
    assert G.main(["--run", str(run), "--edges", "30,40", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "grid_sizes.json").read_text())
    m = json.loads((run / "metrics.json").read_text())["qat"]
    # quant.train's own figure, from its own pass over the held-out rows
    assert res["all"]["accuracy"] == pytest.approx(m["accuracy"])
    assert res["all"]["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"])
    filled = [b for b in res["bands"] if b["n"]]
    assert sum(b["n"] for b in filled) == m["n"]
    correct = sum(round(b["accuracy"] * b["n"]) for b in filled)
    assert correct == round(m["accuracy"] * m["n"])
    for c, v in m["per_class"].items():
        assert sum(b["per_class_n"].get(c, 0) for b in filled) == v["support"]
    assert (tmp_path / "grid_sizes.png").stat().st_size > 0


def test_long_sides_are_the_files_own(tmp_path):
    # A frame of known grids whose Test rows the file marks itself: the
    # report must give each held-out row its grid's long side, rows or columns.
    grids = [(20, 25, "Test"), (30, 30, "Training"), (60, 40, "Test"), (40, 40, "Training"),
             (100, 30, "Test"), (26, 26, "Training")]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "waferMap": [rng.integers(1, 3, (h, w)).astype(np.uint8) for h, w, _ in grids],
        "dieSize": [float(h * w) for h, w, _ in grids],
        "lotName": [f"lot{i}" for i in range(len(grids))],
        "waferIndex": [float(i + 1) for i in range(len(grids))],
        "trianTestLabel": [[[t]] for *_, t in grids],
        "failureType": [[["Center"]] for _ in grids],
    })
    pkl = tmp_path / "lswmd.pkl"
    frame.to_pickle(pkl)
    x, y, sides = G.held_out({"data": str(pkl), "size": 16, "seed": 0})
    assert sides.tolist() == [25, 60, 100]
    assert x.shape == (3, 16, 16, 1) and y.tolist() == [0, 0, 0]
    idx, _ = G.bands(sides, G.DEFAULT_EDGES)
    assert idx.tolist() == [0, 2, 4]


def test_refuses_what_it_cannot_report(run, tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "metrics.json").write_text(json.dumps({"config": {"data": None}}))
    (gen / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="LSWMD .pkl"):
        G.main(["--run", str(gen)])
    with pytest.raises(SystemExit, match="not a finished quant.train run"):
        G.main(["--run", str(tmp_path)])
    with pytest.raises(SystemExit, match="whole numbers"):
        G.main(["--run", str(run), "--edges", "30,x"])
