"""Brevitas -> QONNX -> hls4ml on the W4A4 wafer-map model, bit-exact against the
integer reference; and a model a stage cannot take is reported, not hidden."""

import pytest

pytest.importorskip("hls4ml", reason="hls4ml is not installed (pip install -e .[hls])")
pytest.importorskip("qonnx", reason="qonnx is not installed")

from bench import hls4ml_flow as F  # noqa: E402


@pytest.mark.slow
@pytest.mark.needs_gxx
def test_wmcnn_4w4a_is_bit_exact(tmp_path):
    row = F.run(F.make_spec("wmcnn", 4, 4), tmp_path, n=32, train_n=64)
    assert row["status"] == "ok", row.get("error")
    assert row["bit_exact"] == row["n"] == 32
    assert row["max_abs_diff"] == 0.0


def test_unsupported_model_is_reported(tmp_path, monkeypatch):
    def refuse(qmodel, out_dir):
        raise Exception("ERROR: Unsupported operation type: ReduceSum")

    monkeypatch.setattr(F, "to_hls4ml", refuse)
    monkeypatch.setattr(F, "make_model", lambda spec, n, epochs, seed: (object(), None, None))
    monkeypatch.setattr(F, "to_qonnx", lambda model, path: object())
    row = F.run(F.make_spec("mobilenet_s", 4, 4), tmp_path, n=4)
    assert row["status"] == "unsupported" and row["stage"] == "convert"
    assert row["error"] == "convert: Exception: ERROR: Unsupported operation type: ReduceSum"
    assert "ReduceSum" in row["traceback"]
