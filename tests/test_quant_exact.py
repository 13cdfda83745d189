"""Brevitas == QONNX == integer reference (== C-sim where g++ is present), exactly.

"Exactly" means float equality after scaling the integer logits by their
power-of-two scale: no tolerance anywhere.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from quant import synth  # noqa: E402
from quant.export import export_qonnx, run_qonnx, to_intmodel  # noqa: E402
from contract.intmodel import IntModel  # noqa: E402
from quant.model import to_input  # noqa: E402
from contract.spec import CNNSpec  # noqa: E402
from quant.train import train  # noqa: E402
from quant.traindata import make_inputs  # noqa: E402

BITS = [(8, 8), (4, 4), (2, 2)]


@pytest.fixture(scope="module")
def maps():
    x, y = make_inputs(96, seed=7, size=42)
    noise = np.random.default_rng(1).integers(0, 256, (16, 42, 42, 1), dtype=np.uint8)
    return np.concatenate([x, noise]), y


@pytest.fixture(scope="module", params=BITS, ids=lambda b: f"w{b[0]}a{b[1]}")
def trained(request, maps):
    """A briefly trained model: weights and scales away from their init values
    (4 epochs: with 3, the W2A2 net of these inputs still gave one class to all)."""
    w, a = request.param
    x, y = maps
    model = train(CNNSpec.uniform(w, a), x[:96], y, epochs=4, seed=3, batch=16)
    return model, to_intmodel(model, x)


def brevitas_logits(model, x):
    with torch.no_grad():
        return model(to_input(x)).numpy().astype(np.float64)


def test_integer_reference_equals_brevitas(trained, maps):
    model, im = trained
    x, _ = maps
    ints = im.forward(x).astype(np.float64) * 2.0 ** im.logit_scale_log2
    ref = brevitas_logits(model, x)
    assert np.array_equal(ints, ref)
    assert len(np.unique(ref.argmax(1))) > 1, "degenerate model: every input gets one class"


@pytest.mark.slow
def test_qonnx_equals_brevitas(trained, maps, tmp_path):
    model, _ = trained
    x, _ = maps
    path = export_qonnx(model, tmp_path / "m.onnx")
    assert np.array_equal(run_qonnx(path, x[:24]).astype(np.float64), brevitas_logits(model, x[:24]))


def test_saved_model_round_trip(trained, maps, tmp_path):
    _, im = trained
    x, _ = maps
    im.save(tmp_path)
    again = IntModel.load(tmp_path)
    assert again.topology_hash == im.topology_hash
    assert np.array_equal(again.forward(x[:8]), im.forward(x[:8]))


@pytest.mark.needs_gxx
def test_csim_equals_brevitas(trained, maps, tmp_path):
    csim = pytest.importorskip("hls.csim")
    model, im = trained
    x, _ = maps
    im.save(tmp_path / "export")
    core = csim.CSimCore.for_model(tmp_path / "export", tmp_path / "hls")
    from protocol import pixels as PX
    from protocol import stream as S
    from contract import blob

    S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(im)))))
    ref = brevitas_logits(model, x[:40])
    for i in range(40):
        reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[i]), i))))
        cls, logits = S.parse_result(reply, im.spec.n_classes)
        assert np.array_equal(logits.astype(np.float64) * 2.0 ** im.logit_scale_log2, ref[i])
        assert cls == int(np.argmax(ref[i]))


def test_exporter_refuses_float_scales():
    from quant.export import _log2_exact

    assert _log2_exact(torch.tensor(0.125), "x") == -3
    with pytest.raises(ValueError, match="not a power of two"):
        _log2_exact(torch.tensor(0.3), "x")
    with pytest.raises(ValueError, match="per-tensor"):
        _log2_exact(torch.tensor([0.5, 0.25]), "x")


def test_synthetic_classes_are_distinct_and_valid():
    maps, labels = synth.dataset(90, seed=5)
    assert np.bincount(labels).tolist() == [10] * 9
    for m in maps:
        assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1, 2}
        assert 24 <= m.shape[0] <= 64 and 24 <= m.shape[1] <= 64
    fail_rate = [np.mean([(m == 2).sum() / max((m > 0).sum(), 1) for m, k in zip(maps, labels) if k == c])
                 for c in range(9)]
    near_full, none = synth.WAFER_CLASSES.index("Near-full"), synth.WAFER_CLASSES.index("none")
    assert fail_rate[near_full] > 0.8 and fail_rate[none] < 0.08
    again, _ = synth.dataset(90, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(maps, again))
