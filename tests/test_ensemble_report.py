"""quant.ensemble_report on two tiny quant.train runs of the real numpy-2 sample."""
from __future__ import annotations

import json

import pytest

from quant import ensemble_report as E
from shared_data import run_with_config, tiny_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return [tiny_run(tmp_path_factory.mktemp(f"s{seed}"), seed) for seed in (0, 1)]


def test_one_member_scores_what_its_run_reported(runs, tmp_path):
    assert E.main(["--runs", *map(str, runs), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "ensembles.json").read_text())
    assert [len(c["members"]) for c in res["combinations"]] == [1, 1, 2]
    for run, combo in zip(runs, res["combinations"]):
        m = json.loads((run / "metrics.json").read_text())
        # quant.train's own figures, from its own pass over the rows
        assert combo["validation"]["accuracy"] == pytest.approx(m["val_qat"]["accuracy"])
        assert combo["held_out"]["accuracy"] == pytest.approx(m["qat"]["accuracy"])
        assert combo["held_out"]["balanced_accuracy"] == pytest.approx(m["qat"]["balanced_accuracy"])
        assert combo["held_out"]["n"] == sum(map(sum, m["qat"]["confusion"]))
    assert res["by_size"]["2"]["combinations"] == 1


def test_a_run_with_itself_scores_as_the_run(runs):
    res = E.report([runs[0], runs[0]])
    one, two = res["combinations"][0], res["combinations"][2]
    assert two["validation"] == one["validation"] and two["held_out"] == one["held_out"]


def test_runs_on_other_rows_are_refused(runs, tmp_path):
    other = run_with_config(runs[1], tmp_path / "other", split_seed=5)
    with pytest.raises(SystemExit, match="other rows.*split differ: 0 against 5"):
        E.report([runs[0], other])
    other = run_with_config(runs[1], tmp_path / "other", split_seed=0, val_fold=3)
    with pytest.raises(SystemExit, match="other rows.*val_fold differ: 0 against 3"):
        E.report([runs[0], other])
    with pytest.raises(SystemExit, match="not a finished quant.train run"):
        E.report([runs[0], tmp_path])
