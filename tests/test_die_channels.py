"""The die decoder (``contract.spec.die_decode``): a fixed 1x1 layer that turns
the gray codes into die and fail channels. Checked against what it must be:
the integer model's codes per die state, the float twin equal to the quantized
net, training leaving it alone, and the C simulation equal to the integer
model on PACK_DIE2 batches of a trained export."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from contract.preprocess import CATEGORY_CODES
from contract.spec import DECODE_LAYER, CNNSpec, spec_from_dict
from quant import fit as fitmod
from quant.export import to_intmodel
from quant.floatnet import FloatNet
from quant.model import to_input

# Shaped like the real-map recipe: the decoder, then a block of one conv and
# a block of two (block_convs).
SPEC = CNNSpec.uniform(4, 4, in_size=16, channels=(6, 8), die_channels=True, block_convs=(1, 2))


def _maps(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return CATEGORY_CODES[rng.integers(0, 3, (n, SPEC.in_size, SPEC.in_size, 1))]


def _trained(epochs: int = 1):
    x = _maps(128, 0)
    y = (x[..., 0] == 255).sum(axis=(1, 2)) % SPEC.n_classes
    fp = fitmod.float_twin(SPEC, x, y, epochs, 0, bn=True, batch=32)
    q = fitmod.qat_from(SPEC, fp, x, y, epochs, 0, batch=32)
    return x, y, fp, q


def test_layer_graph_and_round_trip():
    layers = SPEC.layers()
    first = layers[0]
    assert (first["name"], first["type"], first["kernel"], first["pad"]) == (DECODE_LAYER, "conv2d", 1, 0)
    assert (first["in_c"], first["out_c"], first["w_bits"], first["out_bits"]) == (1, 2, 2, 2)
    assert layers[1]["in_c"] == 2
    assert spec_from_dict(SPEC.to_dict()) == SPEC
    plain = CNNSpec.uniform(4, 4, in_size=16, channels=(6, 8))
    assert plain.layers()[0]["name"] == "conv0" and plain.fixed_layers() == {}
    # An export written before the field existed reads as no decoder.
    old = {k: v for k, v in plain.to_dict().items() if k != "die_channels"}
    assert spec_from_dict(old) == plain


def test_integer_codes_per_die_state_and_float_twin():
    """no die -> (0, 0), pass -> (3, 0), fail -> (3, 3) in the integer model; the
    float twin's decoder output equals the quantized one exactly (3 codes = 3/16)."""
    x, _, fp, q = _trained()
    im = to_intmodel(q, x[:4])
    states = np.tile(CATEGORY_CODES[[0, 1, 2]].reshape(1, 1, 3, 1), (1, SPEC.in_size, 6, 1))[:, :, :SPEC.in_size]
    codes = im.run(states)[DECODE_LAYER][0, 0, :3]
    np.testing.assert_array_equal(codes, [[0, 0], [3, 0], [3, 3]])
    with torch.no_grad():
        f = fp.trace(to_input(states))[DECODE_LAYER][0, :, 0, :3].T.numpy()
        g = q.trace(to_input(states))[DECODE_LAYER].value[0, :, 0, :3].T.numpy()
    np.testing.assert_array_equal(f, codes * 2.0 ** -4)
    np.testing.assert_array_equal(g, codes * 2.0 ** -4)
    # The whole net stays integer-exact with the decoder in front.
    np.testing.assert_array_equal(im.forward(x[:32]) * 2.0 ** im.logit_scale_log2,
                                  fitmod.predict_logits(q, x[:32]))


def test_training_leaves_the_decoder_alone():
    x, _, fp, q = _trained(epochs=2)
    fresh = FloatNet(SPEC)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(fp.ops[DECODE_LAYER], name), getattr(fresh.ops[DECODE_LAYER], name),
                                   rtol=0, atol=0)
        torch.testing.assert_close(getattr(q.ops[DECODE_LAYER], name), getattr(fresh.ops[DECODE_LAYER], name),
                                   rtol=0, atol=0)
    # ... while the learned layers did move.
    assert not torch.equal(fp.ops["conv0"].weight, fresh.ops["conv0"].weight)
    assert not any(n.startswith(f"ops.{DECODE_LAYER}.") or n.startswith(f"acts.{DECODE_LAYER}.")
                   for n, p in q.named_parameters() if any(p is t for t in q.trainable_parameters()))


def test_torch_init_keeps_the_decoder_and_uses_torch_bounds():
    """``init="torch"`` (the real-map recipe): the learned layers start inside
    torch's own bound, 1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)), which
    He's normal init overshoots; the fixed decoder is set all the same."""
    torch.manual_seed(0)
    he, tv = FloatNet(SPEC, bn=True), FloatNet(SPEC, bn=True, init="torch")
    fresh = FloatNet(SPEC)
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(tv.ops[DECODE_LAYER], name), getattr(fresh.ops[DECODE_LAYER], name),
                                   rtol=0, atol=0)
    w = tv.ops["conv0"].weight.detach()
    bound = 1 / np.sqrt(w[0].numel())
    assert float(w.abs().max()) <= bound and float(tv.ops["conv0"].bias.detach().abs().max()) <= bound
    assert float(he.ops["conv0"].weight.detach().abs().max()) > bound
    with pytest.raises(ValueError, match="unknown init"):
        FloatNet(SPEC, init="xavier")


def test_sqrt_balance_draws_by_square_root():
    y = np.array([0] * 900 + [1] * 100 + [2] * 16)
    gen = torch.Generator().manual_seed(0)
    counts = np.bincount(y[fitmod._order(y, "sqrt", gen).numpy()], minlength=3)
    want = np.sqrt([900, 100, 16]) / np.sqrt([900, 100, 16]).sum()
    assert np.all(np.abs(counts / len(y) - want) < 0.04), (counts, want)
    with pytest.raises(ValueError, match="class balance"):
        fitmod._order(y, "cubic", gen)


@pytest.mark.needs_gxx
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
def test_csim_equals_integer_model_on_die2_batches(tmp_path):
    pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")
    from contract import blob
    from hls.csim import CSimCore
    from protocol import pixels as PX
    from protocol import stream as S

    x, _, _, q = _trained()
    im = to_intmodel(q, x[:4])
    im.save(tmp_path / "export")
    core = CSimCore.for_model(tmp_path / "export", tmp_path / "hls")
    S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(im), 5))))
    states = np.random.default_rng(3).integers(0, 3, (24, SPEC.in_size, SPEC.in_size, 1), dtype=np.uint8)
    status, cls, logits = core.infer_batch(states, SPEC.n_classes, S.PACK_DIE2, tag=9)
    want_cls, want = im.classify(PX.pixels_from_die_states(states))
    assert (status == 0).all()
    np.testing.assert_array_equal(logits, want.astype(np.int64).astype(np.int32))
    np.testing.assert_array_equal(cls, want_cls)


def test_qonnx_executor_equals_the_integer_model(tmp_path):
    """An independent reader: qonnx's executor runs the exported QONNX graph,
    decoder included, and must give the integer model's logits."""
    pytest.importorskip("qonnx")
    from quant.export import export_qonnx, run_qonnx

    x, _, _, q = _trained()
    im = to_intmodel(q, x[:4])
    path = export_qonnx(q, tmp_path / "die.qonnx.onnx")
    np.testing.assert_array_equal(run_qonnx(path, x[:16]).astype(np.float64),
                                  im.forward(x[:16]) * 2.0 ** im.logit_scale_log2)
