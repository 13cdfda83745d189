"""Post-training quantization of float models (quant/onnx_import/ptq.py, issue 17):
a float torch CNN trained a few epochs on synthetic maps goes through PTQ W8A8 into
an export folder whose integer model agrees with the float model, a broken scale
is caught by the same check, hand-built ONNX graphs cover batch norm, residual
adds, GAP and MatMul, and unsupported nodes are refused with exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from contract import blob, export_dir
from contract.intmodel import IntModel
from quant.onnx_import import float_graph, ptq, ptq_bias, ptq_equalize, ptq_quantize, ptq_scales
from quant.traindata import make_inputs

ROOT = Path(__file__).resolve().parents[1]
SIZE = 24
AGREE = 0.95          # W8A8 measures about 0.98; a mis-scaled layer falls far below


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small float CNN trained 5 quick epochs on synthetic maps, its ONNX and the maps."""
    torch = pytest.importorskip("torch")
    from torch import nn

    work = tmp_path_factory.mktemp("ptq")
    x, y = make_inputs(1000, seed=1, size=SIZE)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # a tiny net: threads only contend on a busy 2-core box
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(16 * 6 * 6, 9))
    xt = torch.tensor(x[:700]).permute(0, 3, 1, 2).float() / 256
    yt = torch.tensor(y[:700])
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(5):
        for idx in torch.randperm(700).split(50):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    torch.set_num_threads(threads)
    net.eval()
    path = work / "float.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, SIZE, SIZE),), str(path), dynamo=False,
                      input_names=["input"], output_names=["logits"])
    np.savez(work / "maps.npz", x=x, y=y)
    return work, path, x, y


def _agreement(im, fg, x):
    return ptq_quantize.compare(im, ptq_quantize.float_logits(fg, x, 1 / 256), x)["agreement"]


def test_w8a8_export_agrees_with_the_float_model(trained):
    work, path, x, y = trained
    out = work / "build" / "cnn8" / "export"
    assert ptq.main(["--onnx", str(path), "--calib", str(work / "maps.npz"), "--bits", "8",
                     "--name", "cnn8", "--out", str(out), "--holdout", "0.3"]) == 0
    ex = export_dir.read(out, need_weights=True).check_topology()
    im = IntModel.load(out)
    assert ex.spec().family == "graph" and ex.classes[-1] == "none"
    assert [lay["type"] for lay in ex.layers] == ["conv2d", "maxpool", "conv2d", "maxpool", "dense"]
    assert all(lay.get("w_bits", 8) == 8 and lay["in_bits"] == 8 for lay in ex.layers)
    words = blob.read(out / "weights.bin")
    assert words.size == ex.blob_words and blob.checksum(words) == ex.weights_checksum
    back = blob.unpack(ex.layers, words)
    for key, value in back.items():
        np.testing.assert_array_equal(value, im.weights[key], err_msg=key)
    fg = float_graph.read(onnx.load(str(path)))
    assert _agreement(im, fg, x[700:]) >= AGREE
    # The board service's reference backend serves the export like any other.
    from zybo_z7.backends import Accelerator, make_backend

    accel = Accelerator(make_backend("reference", out))
    assert accel.query()["topology_hash"] == ex.topology_hash
    accel.load_weights(words)
    for img, want in zip(x[700:703], im.forward(x[700:703])):
        cls, logits = accel.infer(img)
        assert np.array_equal(logits, want) and cls == int(np.argmax(want))
    report = json.loads((out.parent / "ptq" / "report.json").read_text())
    rows = {(r["w_bits"], r["a_bits"]): r for r in report["results"]}
    assert set(rows) == {(8, 8), (6, 6), (4, 4)} and rows[(8, 8)]["exported"]
    assert all(r["variant"] in ("plain", "equalized") and r["bias_corrected"] for r in rows.values())
    assert rows[(8, 8)]["agreement"] >= AGREE and rows[(8, 8)]["maps"] == 300
    assert abs(rows[(8, 8)]["int_accuracy"] - rows[(8, 8)]["float_accuracy"]) < 0.03


def test_a_broken_weight_scale_fails_the_agreement_check(trained, monkeypatch):
    _, path, x, _ = trained
    fg = float_graph.read(onnx.load(str(path)))
    cal = ptq_quantize.calibrate(fg, x[:700], 1 / 256)
    good = ptq_quantize.quantize(fg, cal, 8, 8, 1 / 256, "good", [str(i) for i in range(9)])
    real = ptq_scales.quantize_weights

    def off_by_one(w, bits):      # the codes of scale 2**k, recorded as 2**(k+1)
        q, k = real(w, bits)
        return q, k + 1

    monkeypatch.setattr(ptq_scales, "quantize_weights", off_by_one)
    broken = ptq_quantize.quantize(fg, cal, 8, 8, 1 / 256, "broken", [str(i) for i in range(9)])
    assert _agreement(good, fg, x[700:]) >= AGREE > _agreement(broken, fg, x[700:]) + 0.3


def test_equalization_keeps_the_float_function_and_evens_the_ranges(trained):
    _, path, x, _ = trained
    fg = float_graph.read(onnx.load(str(path)))
    cal = ptq_quantize.calibrate(fg, x[:700], 1 / 256)
    assert ptq_equalize.equalize(fg) == 2            # conv0 -> conv1, conv1 -> fc0 (through the pools)
    conv0, conv1 = fg.layers[0], fg.layers[2]
    r1 = np.abs(conv0.w).max(axis=(1, 2, 3))
    r2 = np.abs(conv1.w).max(axis=(0, 2, 3))
    np.testing.assert_allclose(r1, r2, rtol=0.05)    # each channel's range now equal on both sides
    im = ptq_quantize.quantize(fg, cal, 8, 8, 1 / 256, "eq", [str(i) for i in range(9)])
    assert _agreement(im, fg, x[700:]) >= AGREE      # the calibration samples follow the factors


def test_bias_correction_recovers_w4a4(trained):
    _, path, x, _ = trained
    fg = float_graph.read(onnx.load(str(path)))
    cal = ptq_quantize.calibrate(fg, x[:700], 1 / 256)
    acc_log2 = {}
    im = ptq_quantize.quantize(fg, cal, 4, 4, 1 / 256, "w4", [str(i) for i in range(9)], acc_log2=acc_log2)
    fixed = ptq_bias.correct(im, fg, ptq_quantize.float_means(fg, x[:700], 1 / 256), acc_log2, x[:700])
    assert [k for k in im.weights if not np.array_equal(im.weights[k], fixed.weights[k])] == \
        ["conv0.b", "conv1.b", "fc0.b"]                  # only biases move
    before, after = _agreement(im, fg, x[700:]), _agreement(fixed, fg, x[700:])
    assert after >= before + 0.04, (before, after)      # measured 0.89 -> 0.97 on held-out maps


def _const(name, a):
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def _residual_model(seed=0, tail_op=None) -> onnx.ModelProto:
    """input 1x18x18 -> Conv+BN+Relu -> MaxPool -> Relu -> Conv+BN (no ReLU) -> Add(residual)
    -> Relu -> GlobalAveragePool (9x9: not a power of two) -> Flatten -> MatMul + Add -> logits."""
    rng = np.random.default_rng(seed)
    c = 6

    def bn(prefix):
        return [_const(f"{prefix}.g", rng.uniform(0.5, 1.5, c)), _const(f"{prefix}.b", rng.normal(0, 0.2, c)),
                _const(f"{prefix}.m", rng.normal(0, 0.2, c)), _const(f"{prefix}.v", rng.uniform(0.5, 2, c))]

    inits = [_const("w0", rng.normal(0, 0.5, (c, 1, 3, 3))), _const("b0", rng.normal(0, 0.1, c)),
             _const("w1", rng.normal(0, 0.3, (c, c, 3, 3))), _const("fcw", rng.normal(0, 0.5, (c, 5))),
             _const("fcb", rng.normal(0, 0.1, 5)), *bn("bn0"), *bn("bn1")]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c0", "bn0.g", "bn0.b", "bn0.m", "bn0.v"], ["n0"], name="bn_a"),
             helper.make_node("MaxPool", ["n0"], ["p0"], name="pool_a", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["p0"], ["r0"], name="relu_a"),
             helper.make_node("Conv", ["r0", "w1"], ["c1"], name="conv_b", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn1.g", "bn1.b", "bn1.m", "bn1.v"], ["n1"], name="bn_b"),
             helper.make_node("Add", ["n1", "r0"], ["s"], name="residual"),
             helper.make_node("Relu", ["s"], ["r1"], name="relu_b"),
             helper.make_node("GlobalAveragePool", ["r1"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "fcw"], ["mm"], name="fc"),
             helper.make_node("Add", ["mm", "fcb"], ["logits"], name="fc_bias")]
    if tail_op:
        nodes[-1].output[0] = "pre"
        nodes.append(helper.make_node(tail_op, ["pre"], ["logits"], name="tail"))
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                 ["N", 1, 18, 18])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_batchnorm_residual_gap_and_matmul_quantize_close_to_float():
    fg = float_graph.read(_residual_model())
    assert [(lay.kind, lay.relu) for lay in fg.layers] == [("conv", True), ("maxpool", False), ("conv", False),
                                                           ("add", True), ("gap", False), ("dense", False)]
    x = np.random.default_rng(3).integers(0, 256, (300, 18, 18, 1), dtype=np.uint8)
    cal = ptq_quantize.calibrate(fg, x[:200], 1 / 255)
    ref = ptq_quantize.float_logits(fg, x[200:], 1 / 255)
    errors = {}
    for bits in (8,):
        im = ptq_quantize.quantize(fg, cal, bits, bits, 1 / 255, "res", [str(i) for i in range(5)])
        got = im.forward(x[200:]) * 2.0 ** im.logit_scale_log2
        errors[bits] = np.sqrt(np.mean((got - ref) ** 2) / np.mean(ref ** 2))
    gap = next(lay for lay in im.layers if lay["type"] == "gap")
    assert gap["sum_shift"] == 6          # 81 values summed, stood in for by 2**6
    assert errors[8] < 0.02, errors    # without the GAP gain of 81/64 it is about 0.25


def test_an_mlp_reads_the_input_flatten_in_hwc_order():
    rng = np.random.default_rng(5)
    inits = [_const("w0", rng.normal(0, 0.2, (16, 2 * 4 * 3))), _const("b0", rng.normal(0, 0.1, 16)),
             _const("w1", rng.normal(0, 0.3, (4, 16))), _const("b1", np.zeros(4))]
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w0", "b0"], ["h"], name="fc_a", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w1", "b1"], ["logits"], name="fc_b", transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    fg = float_graph.read(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.integers(0, 256, (64, 4, 3, 2), dtype=np.uint8)       # HWC, two channels, non-square
    cal = ptq_quantize.calibrate(fg, x, 1 / 256)
    im = ptq_quantize.quantize(fg, cal, 8, 8, 1 / 256, "mlp", list("abcd"))
    assert im.layers[0]["inputs"] == ["input"] and im.layers[0]["in_features"] == 24
    ref = ptq_quantize.float_logits(fg, x, 1 / 256)                # batch-1 graph: one map a run
    got = im.forward(x) * 2.0 ** im.logit_scale_log2
    assert np.sqrt(np.mean((got - ref) ** 2) / np.mean(ref ** 2)) < 0.02


def test_a_final_softmax_is_dropped_and_said():
    fg = float_graph.read(_residual_model(tail_op="Softmax"))
    assert fg.layers[-1].kind == "dense" and "Softmax" in fg.notes[0]


def test_unsupported_node_is_refused_with_exit_2_naming_it(tmp_path):
    path = tmp_path / "sig.onnx"
    onnx.save(_residual_model(tail_op="Sigmoid"), str(path))
    out = tmp_path / "export"
    proc = subprocess.run([sys.executable, "-m", "quant.onnx_import.ptq", "--onnx", str(path), "--calib",
                           "synth:20", "--name", "sig", "--out", str(out), "--input-shape", "1x18x18"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == ("ptq: node 'tail' (op Sigmoid) is not supported by PTQ: "
                                   "no mapping to the integer layer graph for this op type")
    assert not out.exists()


def _edit(model, at: int, node=None, drop: int = 0, inits=(), rewire=None):
    """Insert ``node`` at ``at`` (after dropping ``drop`` nodes there), add
    initializers, and point input 0 of node ``rewire[0]`` at tensor ``rewire[1]``."""
    nodes = list(model.graph.node)
    nodes[at:at + drop] = [node] if node is not None else []
    if rewire:
        nodes[rewire[0]].input[0] = rewire[1]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)


def _dilated(m):
    m.graph.node[4].attribute.append(helper.make_attribute("dilations", [2, 2]))


def _bias_along_w(m):      # conv_b -> Add([6]) -> bn_b: a [C] constant on NCHW runs along W
    _edit(m, 5, helper.make_node("Add", ["c1", "b1"], ["c1b"], name="bare_bias"), inits=[_const("b1", np.zeros(6))],
          rewire=(6, "c1b"))


def _input_mul(m):
    _edit(m, 0, helper.make_node("Mul", ["x", "s"], ["xs"], name="scale_in"), inits=[_const("s", [2.0])],
          rewire=(1, "xs"))


@pytest.mark.parametrize("change,sentence", [
    (_dilated, "node 'conv_b' (op Conv) is not supported by PTQ: only square 2-D kernels"),
    (_bias_along_w, "node 'bare_bias' (op Add) is not supported by PTQ: its constant of shape [6] is not one "
                    "value per channel"),
    (_input_mul, "node 'scale_in' (op Mul) is not supported by PTQ: no mapping"),
], ids=["dilation", "bias-along-W", "input-Mul"])
def test_refusals_name_the_node(change, sentence, tmp_path, capsys):
    model = _residual_model()
    change(model)
    onnx.save(model, str(tmp_path / "m.onnx"))
    out = tmp_path / "export"
    assert ptq.main(["--onnx", str(tmp_path / "m.onnx"), "--calib", "synth:10", "--name", "m",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ptq: " + sentence) and err.count("\n") == 1, err
    assert not out.exists()


def test_torch_factory_entry_point(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "tiny.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def make():\n    torch.manual_seed(1)\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
        "                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(4, 9))\n")
    out = tmp_path / "build" / "tiny" / "export"
    assert ptq.main(["--torch", f"{tmp_path / 'tiny.py'}:make", "--input-shape", "1x16x16", "--calib",
                     "synth:40", "--name", "tiny", "--out", str(out), "--bits", "6", "--compare", ""]) == 0
    im = IntModel.load(out)
    assert [lay["type"] for lay in im.layers] == ["conv2d", "maxpool", "conv2d", "gap", "dense"]
    assert im.layers[0]["w_bits"] == 6 and (out.parent / "ptq" / "float.onnx").is_file()


def test_weight_ranges_follow_the_project_convention():
    w = np.linspace(-1, 1, 101)
    q8, k8 = ptq_scales.quantize_weights(w, 8)
    q2, _ = ptq_scales.quantize_weights(w, 2)
    assert q8.min() >= -127 and q8.max() <= 127 and 2.0 ** k8 * 127 >= 0.5
    assert set(np.unique(q2)) <= {-2, -1, 0, 1}
    assert ptq_scales.act_log2(np.array([0.0, 3.0]), 2, unsigned=True) == 0   # codes 0..3 at scale 1


def test_make_ptq_needs_a_model_name():
    proc = subprocess.run(["make", "--no-print-directory", "ptq", "ONNX=f.onnx", "CALIB=synth:10"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "MODEL=name" in proc.stderr
    dry = subprocess.run(["make", "--no-print-directory", "-n", "ptq", "ONNX=f.onnx", "CALIB=maps.npz", "BITS=4",
                          "MODEL=mine"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "-m quant.onnx_import.ptq --onnx f.onnx --calib maps.npz" in dry
    assert "--bits 4 --name mine --out build/mine/export" in " ".join(dry.split())


def test_calibration_maps_are_wafer_maps_or_images_of_the_input_shape():
    maps = np.empty(2, dtype=object)
    maps[0], maps[1] = np.full((30, 26), 1, np.uint8), np.full((50, 61), 2, np.uint8)
    x = ptq.to_images(list(maps), (1, 24, 24))
    assert x.shape == (2, 24, 24, 1) and set(np.unique(x)) == {0, 128, 255}   # to_model_input's codes
    imgs = np.random.default_rng(0).integers(0, 256, (3, 8, 6, 3), dtype=np.uint8)
    assert np.array_equal(ptq.to_images(imgs, (3, 8, 6)), imgs)              # used as they are
    with pytest.raises(ptq_quantize.PTQError, match="give uint8 images"):
        ptq.to_images(list(maps), (3, 8, 6))


def test_the_ptq_core_imports_no_torch():
    code = ("import sys\nimport quant.onnx_import.ptq, quant.onnx_import.ptq_bias\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'brevitas')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
@pytest.mark.needs_gxx
def test_a_ptq_export_runs_bit_exact_through_the_csim(tmp_path):
    """PTQ's export is an ordinary graph export: the generated core in C
    simulation answers it bit for bit as the integer model (residual add, GAP,
    MatMul head: the layer kinds the zoo's wafer CNNs do not combine)."""
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")
    from hls.csim import CSimCore
    from protocol import stream as S

    fg = float_graph.read(_residual_model())
    x = np.random.default_rng(4).integers(0, 256, (80, 18, 18, 1), dtype=np.uint8)
    cal = ptq_quantize.calibrate(fg, x[:60], 1 / 255)
    im = ptq_quantize.quantize(fg, cal, 8, 8, 1 / 255, "res8", [str(i) for i in range(5)])
    im.save(tmp_path / "export")
    core = CSimCore.for_model(tmp_path / "export", tmp_path / "hls")
    S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(im), 1))))
    status, cls, logits = core.infer_batch(x[60:], im.spec.n_classes, S.PACK_U8, tag=2)
    want = im.forward(x[60:])
    assert not status.any() and np.array_equal(logits, want.astype(np.int32))
    assert np.array_equal(cls, want.argmax(axis=1)) and len({tuple(r) for r in want}) > 1
