"""make import: Brevitas's bnn_pynq models (LFC, TFC, CNV at W1A1, W1A2, W2A2;
random weights and batch norm statistics), a QCDQ export, and a small model for
non-square multi-channel input and the CHW flatten, import and match qonnx's
execute_onnx bit-exact on the integer layers; everything the importer cannot
map is refused with exit 2 and one sentence naming the node."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow        # exports Brevitas models (once a session each)
pytest.importorskip("brevitas")
pytest.importorskip("qonnx")

import onnx_models as om  # noqa: E402  (tests/ is on sys.path)
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.core.onnx_exec import execute_onnx  # noqa: E402
from qonnx.util.cleanup import cleanup_model  # noqa: E402

from contract import export_dir, host_steps  # noqa: E402
from contract.intmodel import IntModel  # noqa: E402
from quant.onnx_import import ImportRefused, import_model  # noqa: E402
from quant.onnx_import import layers as import_layers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="session")
def exported(onnx_dir):
    """name -> exported ONNX path, each exported once a session."""
    cache = {}

    def get(name: str, qcdq: bool = False, variant: str | None = None) -> Path:
        key = (name, qcdq, variant)
        if key not in cache:
            model, shape = om.small(variant) if variant else om.bnn_pynq(name)
            path = onnx_dir / f"{name}{'_qcdq' if qcdq else ''}.onnx"
            om.export(model, shape, path, qcdq=qcdq)
            cache[key] = path
        return cache[key]
    return get


def _independent_check(path: Path, out: Path, n: int = 2, seed: int = 7):
    """Re-run the written export on fresh inputs and compare with execute_onnx."""
    model = IntModel.load(out)
    spec = model.spec
    onnx_model = cleanup_model(ModelWrapper(str(path)))
    name_in = onnx_model.graph.input[0].name
    shape = onnx_model.get_tensor_shape(name_in)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.uniform(0, 1, size=shape).astype(np.float32)
        ref = execute_onnx(onnx_model, {name_in: x})[onnx_model.graph.output[0].name].reshape(-1)
        hwc = x.reshape(1, spec.in_channels, spec.in_h, spec.in_w).transpose(0, 2, 3, 1)
        got = host_steps.post(spec.host_post, model.forward(host_steps.pre(spec.host_pre, hwc, spec.in_bits)))[0]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))


def _assert_spread(report, n=4):
    """The check means something only if codes and logits vary: every layer emits
    more than one value and the logits differ between inputs."""
    from quant.onnx_import import verify
    spec = report.spec
    xs = verify.inputs(spec.host_pre, (spec.in_channels, spec.in_h, spec.in_w),
                       (n, spec.in_channels, spec.in_h, spec.in_w), n, 3)
    acts = report.model.run(host_steps.pre(spec.host_pre, xs.transpose(0, 2, 3, 1), spec.in_bits))
    for layer in spec.layers():
        assert len(np.unique(acts[layer["name"]])) > 1, f"{layer['name']} is constant"
    logits = acts[spec.layers()[-1]["name"]].reshape(n, -1)
    assert len({tuple(r) for r in logits}) > 1


@pytest.mark.parametrize("name", om.BNN_PYNQ)
def test_bnn_pynq_imports_and_matches_execute_onnx(name, exported, tmp_path):
    path = exported(name)
    out = tmp_path / "export"
    report = import_model(path, name, out, n_verify=2 if name.startswith("cnv") else 4)
    assert report.n_verified >= 2 and report.layers_exact == len(report.spec.graph) - sum(
        l["type"] == "maxpool" for l in report.spec.graph) + 1     # every weighted layer and the input
    ex = export_dir.read(out)
    spec = ex.spec()
    assert spec.family == "graph" and spec.name == name
    w_bits, a_bits = int(name[4]), int(name[6])
    dense = [l for l in spec.layers() if l["type"] in ("conv2d", "dense")]
    # bipolar weights stay 1-bit everywhere but the logits layer of a bipolar input (doubled)
    assert all(l["w_bits"] == w_bits for l in dense[:-1]) if w_bits == 1 else True
    assert all(l.get("act") == "thresholds" and l["out_bits"] == a_bits for l in dense[:-1])
    assert spec.host_pre is not None and spec.host_post is not None
    assert any("host_pre" in m for m in report.host_moved) and any("host_post" in m for m in report.host_moved)
    # thresholds ascending per channel (negative batch-norm scales flip a channel, not the order)
    z = np.load(out / "weights.npz")
    assert all(np.all(np.diff(z[f"{l['name']}.thr"], axis=1) >= 0) for l in dense[:-1])
    _assert_spread(report)
    if name.startswith("tfc"):
        _independent_check(path, out)


def test_qcdq_export_imports(exported, tmp_path):
    path = exported("tfc_2w2a", qcdq=True)
    assert any(n.op_type == "DequantizeLinear" for n in ModelWrapper(str(path)).graph.node)
    report = import_model(path, "tfc_2w2a_qcdq", tmp_path / "export", n_verify=3)
    assert [l["w_bits"] for l in report.spec.layers() if "w_bits" in l][0] == 2
    _independent_check(path, tmp_path / "export")


def test_non_square_multichannel_input_and_chw_flatten(exported, tmp_path):
    path = exported("small", variant="ok")
    report = import_model(path, "small", tmp_path / "export", n_verify=4)
    spec = report.spec
    assert (spec.in_h, spec.in_w, spec.in_channels) == (12, 20, 2)
    fc = spec.layers()[-1]
    src = next(l for l in spec.layers() if l["name"] == fc["inputs"][0])
    assert src["out_h"] > 1 and src["out_w"] > 1 and src["out_c"] > 1
    assert spec.layers()[-2]["pad"] == 1          # zero padding after unsigned (ReLU) codes
    _assert_spread(report)
    _independent_check(path, tmp_path / "export", n=3)


def test_negative_batch_norm_scales_flip_their_channels(exported, tmp_path):
    path = exported("small", variant="ok")
    report = import_model(path, "small", tmp_path / "export", n_verify=2)
    model, _ = om.small("ok")                      # the same seed: the same weights
    w = model.c1.quant_weight().int().detach().numpy().transpose(0, 2, 3, 1)   # OIHW -> O KH KW I
    gamma = model.b1.weight.detach().numpy()
    assert (gamma < 0).any() and (gamma > 0).any()
    ours = report.model.weights["conv0.w"]
    for o in range(w.shape[0]):
        assert np.array_equal(ours[o], w[o] if gamma[o] > 0 else -w[o]), o


def test_global_average_pool_folds_into_the_next_dense(exported, tmp_path):
    path = exported("small_gap", variant="gap")
    report = import_model(path, "small_gap", tmp_path / "export", n_verify=4)
    gap = [l for l in report.spec.layers() if l["type"] == "gap"]
    assert len(gap) == 1 and report.model.weights[f"{gap[0]['name']}.shift"] == 0
    assert report.spec.layers()[-1]["in_features"] == gap[0]["out_c"]
    _assert_spread(report)
    _independent_check(path, tmp_path / "export")


def test_residual_add_of_relu_codes_maps_onto_the_add_layer(exported, tmp_path):
    path = exported("small_residual", variant="residual")
    report = import_model(path, "small_residual", tmp_path / "export", n_verify=4)
    add = [l for l in report.spec.layers() if l["type"] == "add"]
    assert len(add) == 1 and len(add[0]["inputs"]) == 2
    _assert_spread(report)
    _independent_check(path, tmp_path / "export")


def test_dense_weights_follow_the_hwc_flatten(exported, tmp_path, monkeypatch):
    """Without the CHW -> HWC permutation the import must fail its verification."""
    path = exported("small", variant="ok")
    real = import_layers.dense

    def unpermuted(node, x, w, bias, gemm):
        acc = real(node, x, w, bias, gemm)
        c, h, wd = x.chw
        acc.weights = acc.weights.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(acc.weights.shape)
        return acc
    monkeypatch.setattr(import_layers, "dense", unpermuted)
    with pytest.raises(ImportRefused, match="verification failed: layer fc0"):
        import_model(path, "small", tmp_path / "export", n_verify=2)
    assert not (tmp_path / "export").exists()


def test_a_threshold_one_off_is_caught_and_nothing_is_written(exported, tmp_path, monkeypatch):
    path = exported("tfc_1w2a")
    real = import_layers.channel_thresholds

    def off_by_one(*a, **k):
        got = real(*a, **k)
        return type(got)([t + 1 for t in got.thresholds], got.negate)
    monkeypatch.setattr(import_layers, "channel_thresholds", off_by_one)
    with pytest.raises(ImportRefused, match="verification failed"):
        import_model(path, "t", tmp_path / "export", n_verify=4)
    assert not (tmp_path / "export").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "quant.onnx_import", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("variant,sentence", [
    ("pad_offset", "node 'Conv_0' (Conv): it zero-pads codes whose real zero is not code 0"),
    ("residual_float", "node 'Add_0' (Add): the ratio of its inputs' scales is"),
    ("sigmoid", "node 'Sigmoid_0' (Sigmoid): this operation has no integer layer to map to"),
    ("gap_quant", "(Quant): quantizes codes that are already integer"),
])
def test_unmappable_nodes_exit_2_with_one_sentence(variant, sentence, onnx_dir, tmp_path):
    model, shape = om.small(variant)
    path = onnx_dir / f"small_{variant}.onnx"
    om.export(model, shape, path)
    out = tmp_path / "export"
    proc = _cli("--onnx", str(path), "--name", "x", "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("import refused")]
    assert len(lines) == 1 and sentence in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def test_not_an_onnx_file_is_refused(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00not onnx at all" * 10)
    proc = _cli("--onnx", str(bad), "--name", "x", "--out", str(tmp_path / "export"))
    assert proc.returncode == 2 and "is not an ONNX file" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_prints_what_moved_to_the_host(exported, tmp_path):
    out = tmp_path / "export"
    proc = _cli("--onnx", str(exported("tfc_1w1a")), "--name", "tfc", "--out", str(out), "--verify", "2")
    assert proc.returncode == 0, proc.stderr
    assert "host_pre" in proc.stdout and "host_post" in proc.stdout and "bit-exact" in proc.stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["spec"]["family"] == "graph" and meta["spec"]["in_bits"] == 1
    assert meta["spec"]["host_pre"]["rule"] == "sign"
