"""An imported bnn_pynq model runs bit-exact through the generated core in C
simulation: float inputs -> host_pre -> C-sim logits equal the integer model's,
and after host_post they equal qonnx's execute_onnx on the original file."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.needs_gxx,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")]
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")
pytest.importorskip("brevitas")

import onnx_models as om  # noqa: E402
from qonnx.core.onnx_exec import execute_onnx  # noqa: E402

from contract import blob, host_steps  # noqa: E402
from hls.csim import CSimCore  # noqa: E402
from protocol import pixels as PX
from protocol import stream as S  # noqa: E402
from quant.onnx_import import import_model, read, verify  # noqa: E402


# small_residual: 12x20 two-channel input, CHW flatten, zero padding, a residual add
@pytest.mark.parametrize("name", ["tfc_1w1a", "tfc_2w2a", "small_residual"])
def test_imported_model_bit_exact_through_the_csim(name, tmp_path):
    model, shape = om.small("residual", seed=3) if name.startswith("small") else om.bnn_pynq(name, seed=3)
    path = tmp_path / f"{name}.onnx"
    om.export(model, shape, path)
    report = import_model(path, name, tmp_path / "export", n_verify=2)
    spec, im = report.spec, report.model
    core = CSimCore.for_model(tmp_path / "export", tmp_path / "hls")
    words = blob.pack(im)
    S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, words, 1))))

    n = 6
    xs = verify.inputs(spec.host_pre, (spec.in_channels, spec.in_h, spec.in_w), shape, n, seed=5)
    codes = host_steps.pre(spec.host_pre, xs.reshape((n,) + shape[1:]).transpose(0, 2, 3, 1), spec.in_bits)
    ref = im.forward(codes)
    onnx_model = read.load(path)
    name_in, name_out = onnx_model.graph.input[0].name, onnx_model.graph.output[0].name
    for i in range(n):
        reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(codes[i]), i))))
        cls, logits = S.parse_result(reply, spec.n_classes)
        assert np.array_equal(logits, ref[i]) and cls == int(ref[i].argmax())
        want = execute_onnx(onnx_model, {name_in: xs[i:i + 1]})[name_out].reshape(-1)
        got = host_steps.post(spec.host_post, logits[None])[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=verify.TAIL_RTOL * max(1.0, np.abs(want).max()))
    assert len({tuple(r) for r in ref}) > 1          # the logits vary: the comparison means something


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
def test_make_import_then_make_csim_is_bit_exact(tmp_path):
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    # TFC, not LFC: make csim's check runs 200 single images and batches up to
    # max_batch (1,024), and LFC's 2.9M MACs an image take minutes in C-sim.
    model, shape = om.bnn_pynq("tfc_1w2a", seed=4)
    om.export(model, shape, tmp_path / "tfc.onnx")
    name = "test_csim_imported_tfc"
    try:
        for args in (["import", f"ONNX={tmp_path / 'tfc.onnx'}"], ["csim"]):
            proc = subprocess.run(["make", "--no-print-directory", *args, f"MODEL={name}"], cwd=root,
                                  capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "C-sim equals the integer reference on 200/200 inputs" in proc.stdout
    finally:
        shutil.rmtree(root / "build" / name, ignore_errors=True)
