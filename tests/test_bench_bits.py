"""bench.accuracy_vs_bits end to end on a tiny run: the table, JSON and plot it
writes, and the --bits selection."""
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("matplotlib")

from bench import accuracy_vs_bits as bench  # noqa: E402


def test_tiny_run_writes_json_and_plot(tmp_path, capsys):
    argv = ["--families", "wmcnn", "--width", "4", "--bits", "4,2", "--n-train", "192", "--n-test", "64",
            "--fp-epochs", "1", "--qat-epochs", "1", "--qat-low", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = json.loads((tmp_path / "accuracy_vs_bits.json").read_text())["rows"]
    assert [r["mode"] for r in rows] == ["fp32", "ptq8", "W4A4", "W2A2"]
    fp, w2 = rows[0], rows[-1]
    assert fp["weight_bits"] == 32 * fp["params"] and w2["weight_bits"] == 2 * w2["params"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert w2["delta_vs_fp32"] == pytest.approx(w2["accuracy"] - fp["accuracy"])
    assert (tmp_path / "accuracy_vs_bits.png").stat().st_size > 1000
    assert "W2A2" in capsys.readouterr().out


def test_bits_out_of_range_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--bits", "1", "--out", str(tmp_path)])
