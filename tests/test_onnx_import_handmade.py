"""Hand-built QONNX graphs for what Brevitas's exports do not produce: FINN's
MultiThreshold after a per-channel scale with negative entries, Gemm with
transB and a bias, a FLOOR-rounding unsigned input quantizer, and a N x F
(not NCHW) input. Torch-free."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("qonnx")

from contract import host_steps  # noqa: E402
from quant.onnx_import import ImportRefused, import_model, read  # noqa: E402
from quant.onnx_import.verify import inputs  # noqa: E402

QDOM = "qonnx.custom_op.general"


def _graph(path, rng, tail_op="Add"):
    f, hidden, classes = 16, 8, 4
    inits = {
        "s_in": np.float32(1 / 8), "z": np.float32(0), "b4": np.float32(4), "b3": np.float32(3),
        "one": np.float32(1),
        "w1": rng.uniform(-4, 4, size=(f, hidden)).astype(np.float32),
        "ch_scale": (rng.uniform(0.3, 1.5, size=hidden) * rng.choice([-1, 1], size=hidden)).astype(np.float32),
        "thr": np.sort(rng.uniform(-20, 20, size=(hidden, 3)), axis=1).astype(np.float32),
        "w2": rng.uniform(-4, 4, size=(classes, hidden)).astype(np.float32),     # Gemm transB
        "bias2": rng.uniform(-2, 2, size=classes).astype(np.float32),
        "tail": rng.uniform(-1, 1, size=classes).astype(np.float32),
    }
    nodes = [
        helper.make_node("Quant", ["x", "s_in", "z", "b4"], ["xq"], domain=QDOM, signed=0, narrow=0,
                         rounding_mode="FLOOR"),
        helper.make_node("Quant", ["w1", "one", "z", "b3"], ["w1q"], domain=QDOM, signed=1, narrow=0,
                         rounding_mode="ROUND"),
        helper.make_node("MatMul", ["xq", "w1q"], ["h"]),
        helper.make_node("Mul", ["h", "ch_scale"], ["hs"]),
        helper.make_node("MultiThreshold", ["hs", "thr"], ["a"], domain=QDOM, out_dtype="UINT2",
                         out_scale=0.5, out_bias=-0.5),
        helper.make_node("Quant", ["w2", "one", "z", "b3"], ["w2q"], domain=QDOM, signed=1, narrow=0,
                         rounding_mode="ROUND"),
        helper.make_node("Gemm", ["a", "w2q", "bias2"], ["g"], transB=1),
        helper.make_node(tail_op, ["g", "tail"], ["y"]),
    ]
    g = helper.make_graph(nodes, "handmade", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, f])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QDOM, 1)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_multithreshold_gemm_and_floor_input_import_bit_exact(tmp_path):
    path = tmp_path / "mt.onnx"
    _graph(path, np.random.default_rng(1))
    report = import_model(path, "mt", tmp_path / "export", n_verify=16)
    spec = report.spec
    assert (spec.in_h, spec.in_w, spec.in_channels, spec.in_bits) == (1, 1, 16, 4)
    assert spec.host_pre["rule"] == "floor" and spec.host_pre["scale"] == 8.0
    hidden = spec.layers()[0]
    assert hidden.get("act") == "thresholds" and hidden["out_bits"] == 2
    # per-channel negative scales flipped those channels' weights
    rng = np.random.default_rng(1)
    w1 = np.round(np.clip(rng.uniform(-4, 4, size=(16, 8)), -4, 3)).T
    sign = np.sign(rng.uniform(0.3, 1.5, size=8) * rng.choice([-1, 1], size=8))
    assert (sign < 0).any() and np.array_equal(report.model.weights["fc0.w"], w1 * sign[:, None])
    assert report.layers_exact == 3 and report.max_abs_err <= report.tolerance
    # and the export reproduces execute_onnx on other inputs
    from qonnx.core.onnx_exec import execute_onnx
    m = read.load(path)
    xs = inputs(spec.host_pre, (16, 1, 1), (1, 16), 20, seed=9)
    codes = host_steps.pre(spec.host_pre, xs.reshape(20, 1, 1, 16), spec.in_bits)
    got = host_steps.post(spec.host_post, report.model.forward(codes))
    for i in range(20):
        want = execute_onnx(m, {m.graph.input[0].name: xs[i:i + 1]})[m.graph.output[0].name].reshape(-1)
        np.testing.assert_allclose(got[i], want, atol=1e-4 * max(1, np.abs(want).max()), rtol=0)


def test_a_non_affine_tail_is_refused_naming_the_node(tmp_path):
    path = tmp_path / "mt_max.onnx"
    _graph(path, np.random.default_rng(1), tail_op="Max")
    with pytest.raises(ImportRefused, match=r"node 'Max_0' \(Max\): this operation has no integer layer"):
        import_model(path, "mt", tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_the_importer_imports_no_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, quant.onnx_import, quant.onnx_import.__main__\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'brevitas', 'hls4ml')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]", out
