"""Every model family, at W8A8, W4A4 and W2A2: Brevitas == integer reference
exactly, with every requantizing layer carrying real information (not a
constant), and QONNX == Brevitas once per family."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from contract import blob  # noqa: E402
from quant.export import export_qonnx, run_qonnx, to_intmodel  # noqa: E402
from contract.intmodel import IntModel  # noqa: E402
from quant.model import to_input  # noqa: E402
from quant.train import train  # noqa: E402
from quant.traindata import make_inputs  # noqa: E402
from contract.zoo import WAFER_FAMILIES, ZooSpec, buffer_spec  # noqa: E402

FAMILIES = [*WAFER_FAMILIES, "xception_fpn"]
BITS = [(8, 8), (4, 4), (2, 2)]


def make_spec(family, w, a):
    if family == "xception_fpn":
        return buffer_spec(w, a, in_size=32, width=4)
    return ZooSpec(family, w_bits=w, a_bits=a, width=8)


@pytest.fixture(scope="module")
def data():
    x, y = make_inputs(64, seed=21, size=42)
    return x, y


def inputs_for(spec, data):
    x, y = data
    if spec.in_size == 42:
        return x, y
    # Buffer-zone stand-in until the buffer generator: crops of the same maps, 4 labels.
    return np.ascontiguousarray(x[:, :spec.in_size, :spec.in_size]), y % spec.n_classes


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bits", BITS, ids=lambda b: f"w{b[0]}a{b[1]}")
def test_family_is_integer_exact(family, bits, data):
    spec = make_spec(family, *bits)
    x, y = inputs_for(spec, data)
    model = train(spec, x, y, epochs=2, seed=5, batch=16)
    im = to_intmodel(model, x)
    with torch.no_grad():
        ref = model(to_input(x)).numpy().astype(np.float64)
    assert np.array_equal(im.forward(x).astype(np.float64) * 2.0 ** im.logit_scale_log2, ref)
    acts = im.run(x)
    for layer in im.layers:
        if layer["requant"]:
            assert len(np.unique(acts[layer["name"]])) > 1, f"{layer['name']} is constant"
    back = blob.unpack(im.layers, blob.pack(im))
    assert all(np.array_equal(back[k], v) for k, v in im.weights.items())


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_qonnx_equals_brevitas(family, data, tmp_path):
    spec = make_spec(family, 4, 4)
    x, y = inputs_for(spec, data)
    model = train(spec, x[:32], y[:32], epochs=1, seed=2, batch=16)
    path = export_qonnx(model, tmp_path / "m.onnx")
    with torch.no_grad():
        ref = model(to_input(x[:6])).numpy()
    assert np.array_equal(run_qonnx(path, x[:6]), ref)


def test_saved_zoo_model_round_trip(tmp_path):
    from contract.intmodel import random_model

    spec = make_spec("xception_fpn", 4, 4)
    im = random_model(spec, 3)
    im.save(tmp_path)
    again = IntModel.load(tmp_path)
    assert again.spec == spec
    x = np.random.default_rng(0).integers(0, 256, (4, *im.input_shape), dtype=np.uint8)
    assert np.array_equal(again.forward(x), im.forward(x))


def test_per_layer_bits_and_names():
    spec = ZooSpec("mobilenet_s", w_bits=(8, 4, 4, 4, 4, 4, 4, 4, 4, 8), a_bits=4)
    convs = [layer for layer in spec.layers() if layer["type"] in ("conv2d", "dense")]
    assert [layer["w_bits"] for layer in convs] == [8, 4, 4, 4, 4, 4, 4, 4, 4, 8]
    assert ZooSpec("vgg_s", w_bits=2, a_bits=2).name == "vgg_s_2w2a"
    with pytest.raises(ValueError, match="too few"):
        ZooSpec("mobilenet_s", w_bits=(8, 4)).layers()
    with pytest.raises(ValueError, match="2..8"):
        ZooSpec("vgg_s", w_bits=9)
