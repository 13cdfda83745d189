"""quant.ensemble_report on two tiny quant.train runs of the real numpy-2 sample."""
from __future__ import annotations

import json

import pytest

from quant import ensemble_report as E
from quant import train as tr
from shared_data import REAL_NP2, require


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pkl = require(REAL_NP2)
    out = []
    for seed in (0, 1):
        d = tmp_path_factory.mktemp(f"s{seed}")
        tr.run(tr.parse_args(["--data", str(pkl), "--size", "16", "--fp-epochs", "1", "--qat-epochs", "1",
                              "--views", "8", "--seed", str(seed), "--split-seed", "0", "--out", str(d)]))
        out.append(d)
    return out


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
    other = tmp_path / "other"
    other.mkdir()
    m = json.loads((runs[1] / "metrics.json").read_text())
    m["config"]["split_seed"] = 5
    (other / "metrics.json").write_text(json.dumps(m))
    (other / "checkpoint.pt").write_bytes((runs[1] / "checkpoint.pt").read_bytes())
    with pytest.raises(SystemExit, match="other rows.*split differ: 0 against 5"):
        E.report([runs[0], other])
    m["config"]["split_seed"], m["config"]["val_fold"] = 0, 3
    (other / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(SystemExit, match="other rows.*val_fold differ: 0 against 3"):
        E.report([runs[0], other])
    with pytest.raises(SystemExit, match="not a finished quant.train run"):
        E.report([runs[0], tmp_path])
