"""Imported-graph contract: literal layer lists, MultiThreshold layers and 1-bit
(bipolar) weights in the integer model and the blob.

The threshold semantics are checked against qonnx's own ``multithreshold``
(the reference FINN and qonnx execute), not against our reading of it.
"""
import json

import numpy as np
import pytest
from qonnx.custom_op.general.multithreshold import multithreshold

from contract import blob
from contract.graph import GraphBuilder, check_layers, topology_hash
from contract.graphspec import GraphSpec
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec, spec_from_dict
from contract.zoo import ZooSpec


def _lfc_like(in_bits=1, w_bits=1, a_bits=1):
    g = GraphBuilder(7, 1, in_bits, in_w=5)
    g.dense("fc0", 16, w_bits=w_bits, a_bits=a_bits, thresholds=True)
    g.dense("fc1", 16, w_bits=w_bits, a_bits=a_bits, thresholds=True)
    g.dense("out", 3, w_bits=w_bits, logits=True)
    return GraphSpec("lfc_like", 7, 5, 1, ("a", "b", "c"), tuple(g.layers), in_bits=in_bits)


def _cnv_like(w_bits=2, a_bits=2):
    g = GraphBuilder(10, 3, 8, in_w=12)
    g.conv("c0", 8, 3, pad=0, w_bits=w_bits, a_bits=a_bits, thresholds=True)
    g.conv("c1", 8, 3, pad=0, w_bits=w_bits, a_bits=a_bits, thresholds=True)
    g.maxpool("p0", 2)
    g.dense("out", 4, w_bits=w_bits, logits=True)
    return GraphSpec("cnv_like", 10, 12, 3, ("a", "b", "c", "d"), tuple(g.layers))


def test_threshold_layer_matches_qonnx_multithreshold():
    spec = _cnv_like()
    model = random_model(spec, seed=3)
    x = np.random.default_rng(0).integers(0, 256, size=(5, 10, 12, 3))
    acts = model.run(x)
    # Recompute c0's accumulator and threshold it with qonnx (NCHW, channels first).
    layer = spec.layers()[0]
    w = model.weights["c0.w"].astype(np.int64)                       # O KH KW I
    cols = np.stack([x[:, ky:ky + 8, kx:kx + 10, :] for ky in range(3) for kx in range(3)], axis=3)
    acc = np.einsum("nhwkc,okc->nhwo", cols, w.reshape(8, 9, 3)) + model.weights["c0.b"]
    want = multithreshold(acc.transpose(0, 3, 1, 2).astype(np.float64),
                          model.weights["c0.thr"].astype(np.float64)).transpose(0, 2, 3, 1)
    assert layer["act"] == "thresholds" and layer["out_bits"] == 2
    np.testing.assert_array_equal(acts["c0"], want.astype(np.int64))
    assert len(np.unique(acts["c0"])) > 2          # the random thresholds are not degenerate


def test_bipolar_weights_round_trip_through_the_blob():
    spec = _lfc_like()
    model = random_model(spec, seed=1)
    assert set(np.unique(model.weights["fc0.w"])) == {-1, 1}
    words = blob.pack(model)
    assert words.size == blob.blob_words(spec.layers())
    back = blob.unpack(spec.layers(), words)
    for k in ("fc0.w", "fc0.thr", "fc1.b", "out.w", "out.b"):
        np.testing.assert_array_equal(back[k], model.weights[k], err_msg=k)
    # 32 bipolar weights a word: 16 x 35 weights -> 18 words for fc0.
    fc0 = spec.layers()[0]
    assert blob.section_words(fc0) == 16 + 16 * 1 + (16 * 35 + 31) // 32


def test_bipolar_pack_refuses_zero():
    with pytest.raises(blob.BlobError, match="-1 or \\+1"):
        blob.pack_bits(np.array([1, 0, -1]), 1)


def test_graph_spec_saves_and_loads(tmp_path):
    spec = _cnv_like(w_bits=1, a_bits=2)
    model = random_model(spec, seed=2)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["spec"]["family"] == "graph" and meta["input"]["bits"] == 8
    back = IntModel.load(tmp_path)
    assert back.input_shape == (10, 12, 3)
    x = np.random.default_rng(1).integers(0, 256, size=(4, 10, 12, 3))
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    assert spec_from_dict(meta["spec"]) == spec


def test_input_codes_beyond_in_bits_are_refused():
    model = random_model(_lfc_like(in_bits=1), seed=0)
    with pytest.raises(ValueError, match="outside the model's 0..1"):
        model.forward(np.full((1, 7, 5, 1), 2))


def test_check_layers_names_the_bad_layer():
    layers = _cnv_like().layers()
    layers[1]["in_c"] = 5
    with pytest.raises(ValueError, match="layer c1: declares input"):
        check_layers(layers, (10, 12, 3))
    with pytest.raises(ValueError, match="logits layer"):
        GraphSpec("x", 10, 12, 3, ("a",), tuple(_cnv_like().layers()))


def test_existing_topologies_keep_their_hash():
    # The new keys appear only on threshold layers, so a synthesized core's
    # topology hash (computed before they existed) still names it.
    assert topology_hash(CNNSpec().layers()) == 0xC81887F7
    assert topology_hash(ZooSpec("mobilenet_s").layers()) == 0xE69D238F
