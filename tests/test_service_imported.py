"""An imported model (Brevitas's bnn_pynq TFC, through ``make import``'s
importer) is served by the board service like a zoo model: host client ->
TCP -> service -> C simulation of the generated core. The host runs the float
steps the import moved to it (``host_pre``, ``host_post``); the results are the
integer model's bit for bit, and after ``host_post`` they are qonnx's
``execute_onnx`` on the original file. A code the model cannot take gets that
image alone a BAD_REQUEST record."""
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

from contract import host_steps  # noqa: E402
from host_stm32mp1.client import BoardClient  # noqa: E402
from protocol import wire as W  # noqa: E402
from quant.onnx_import import import_model, read, verify  # noqa: E402
from wq_service_helpers import service  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("imported")
    model, shape = om.bnn_pynq("tfc_1w1a", seed=6)
    om.export(model, shape, d / "tfc.onnx")
    report = import_model(d / "tfc.onnx", "tfc_1w1a", d / "export", n_verify=2)
    with service(d / "export", d, backend="csim", start_timeout=600,
                 extra=("--work-dir", str(d / "csim"))) as (port, _):
        with BoardClient("127.0.0.1", port, timeout=600, key=None) as c:
            info, sent = c.ensure_weights(d / "export")
            assert sent and info["topology_hash"] == report.model.topology_hash
            yield c, report, d / "tfc.onnx", shape


def test_imported_model_is_served_bit_exact(served):
    c, report, path, shape = served
    spec, im = report.spec, report.model
    n = 12
    xs = verify.inputs(spec.host_pre, (spec.in_channels, spec.in_h, spec.in_w), shape, n, seed=8)
    codes = host_steps.pre(spec.host_pre, xs.reshape((n,) + shape[1:]).transpose(0, 2, 3, 1), spec.in_bits)
    res = c.infer_batch(codes, np.arange(n))
    cls, logits = im.classify(codes)
    assert (res.status == W.OK).all()
    assert np.array_equal(res.classes, cls) and np.array_equal(res.logits, logits)
    assert len({tuple(r) for r in logits}) > 1
    onnx_model = read.load(path)
    name_in, name_out = onnx_model.graph.input[0].name, onnx_model.graph.output[0].name
    real = host_steps.post(spec.host_post, res.logits)
    for i in range(n):
        want = execute_onnx(onnx_model, {name_in: xs[i:i + 1]})[name_out].reshape(-1)
        np.testing.assert_allclose(real[i], want, rtol=0,
                                   atol=verify.TAIL_RTOL * max(1.0, np.abs(want).max()))


def test_a_code_outside_the_input_range_fails_only_its_image(served):
    c, report, _, _ = served
    spec, im = report.spec, report.model
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 1 << spec.in_bits, (4, spec.in_h, spec.in_w, spec.in_channels), dtype=np.uint8)
    codes[2].reshape(-1)[11] = 1 << spec.in_bits          # TFC takes 1-bit codes: 2 is out of range
    res = c.infer_batch(codes, np.arange(4) + 100)
    assert res.status.tolist() == [W.OK, W.OK, W.E_BAD_REQUEST, W.OK]
    ok = [0, 1, 3]
    cls, logits = im.classify(codes[ok])
    assert np.array_equal(res.classes[ok], cls) and np.array_equal(res.logits[ok], logits)
