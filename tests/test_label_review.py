"""quant.label_review on tiny quant.train runs of the real numpy-2 sample,
on two validation folds of one split."""
from __future__ import annotations

import json

import numpy as np
import pytest

from quant import label_review as L
from quant import train as tr
from quant.datasets import wm811k
from shared_data import REAL_NP2, run_with_config, tiny_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return [tiny_run(tmp_path_factory.mktemp(f"f{fold}"), seed=fold, val_fold=fold) for fold in (0, 1)]


@pytest.fixture(scope="module")
def reviewed(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("review")
    assert L.main(["--runs", *map(str, runs), "--confidence", "0", "--out", str(out)]) == 0
    return json.loads((out / "label_review.json").read_text()), out


def test_each_run_misses_the_held_out_maps_its_training_reported(runs, reviewed):
    res, out = reviewed
    for run, wrong in zip(runs, res["held_out"]["wrong_by_run"]):
        cm = np.array(json.loads((run / "metrics.json").read_text())["qat"]["confusion"])
        # quant.train's own pass over the held-out rows
        assert wrong == cm.sum() - np.trace(cm)
        assert res["held_out"]["n"] == cm.sum()
    assert (out / "disputed_held_out.png").stat().st_size > 0 and (out / "disputed_training.png").stat().st_size > 0


def test_disputed_rows_name_their_row_and_label_in_the_file(reviewed):
    res, _ = reviewed
    # A numpy-2 pickle: plain pandas under this venv's numpy 1 cannot open it,
    # so the frame comes through wm811k.read_frame's module shim, and the cell
    # is read raw below, not through the loader's label decoding.
    frame = wm811k.read_frame(REAL_NP2)
    rows = res["held_out"]["rows"] + res["training"]["rows"]
    assert rows, "one-epoch models on 16x16 maps dispute something"
    col = list(frame.columns).index("failureType")
    for r in rows:
        # the label as the file spells it, not as the loader decoded it
        assert str(np.ravel(np.asarray(frame.iat[r["row"], col], dtype=object))[0]) == r["label"], r
        assert r["models"] != r["label"]
    assert res["held_out"]["disputed"] == len(res["held_out"]["rows"]) <= res["held_out"]["wrong_by_all"]


def test_training_rows_are_the_two_folds_out_of_fold(runs, reviewed):
    res, _ = reviewed
    labels = wm811k.load(REAL_NP2, n_classes=9, size=None, seed=0).train.labels
    folds = [tr.validation_rows(labels, {"seed": 0, "split_seed": 0, "val_fold": k})[0] for k in (0, 1)]
    t = res["training"]
    assert t["n"] == len(labels)
    assert t["covered"] == len(folds[0]) + len(folds[1]) == sum(c["n"] for c in t["by_class"].values())
    assert res["val_folds"] == [0, 1]
    assert {r["index"] for r in t["rows"]} <= set(np.concatenate(folds).tolist())
    # at confidence 0 every out-of-fold miss is disputed (one call a row)
    assert t["disputed"] == t["wrong_out_of_fold"] and all(r["votes"] == 1 for r in t["rows"])


def test_a_higher_confidence_keeps_a_subset(runs, reviewed, tmp_path):
    res, _ = reviewed
    sure, _ = L.review(runs, confidence=0.9)
    kept = {r["row"] for r in sure["training"]["rows"]}
    assert kept <= {r["row"] for r in res["training"]["rows"]}
    assert all(r["confidence"] >= 0.9 for r in sure["training"]["rows"])
    assert sure["held_out"] == res["held_out"]
    with pytest.raises(SystemExit, match="a probability"):
        L.review(runs, confidence=1.5)


def test_one_run_disputes_what_it_gets_wrong(runs):
    res, _ = L.review([runs[0]], confidence=0.0)
    h = res["held_out"]
    assert h["disputed"] == h["wrong_by_all"] == h["wrong_by_run"][0]


def test_runs_on_another_split_are_refused(runs, tmp_path):
    other = run_with_config(runs[1], tmp_path / "other", split_seed=5)
    with pytest.raises(SystemExit, match="other rows.*split differ: 0 against 5"):
        L.review([runs[0], other])
    other = run_with_config(runs[1], tmp_path / "other", data=None)
    with pytest.raises(SystemExit, match="label review .* needs a run on an LSWMD .pkl"):
        L.review([runs[0], other])
