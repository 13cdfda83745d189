"""Every HLS layer template in C simulation against the integer reference.

Small one-purpose models (``TinySpec``) batch several layer cases each: odd
sizes, a single channel, 1x1/3x3/5x5 kernels, stride 2 on odd inputs,
depthwise convs, pools that overlap or drop an edge, GAP over an odd HxW,
hidden dense layers, adds with negative shifts, upsampling and plain
requantization, at 2, 3, 4 and 8 bits. Each model goes through the full
generated core (LOAD_WEIGHTS then INFER on the stream protocol, the model's
synthesizable top), with several weight sets loaded into one build: random,
saturating biases, and shifted shifts (negative ones multiply). Each is built
twice, with PE = SIMD = 1 and with the largest folding hls.parallel allows,
and both must give the reference's bits; the feature-map reply option shows
the last hidden layer's codes exactly.
"""
from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.graph import GraphBuilder
from contract.intmodel import IntModel, random_model

pytestmark = [pytest.mark.needs_gxx,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")]
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")

from hls import parallel  # noqa: E402
from hls.csim import CSimCore  # noqa: E402
from hls.csim_build import build  # noqa: E402
from hls.generate import generate  # noqa: E402


class TinySpec:
    """A model spec with the face contract.intmodel needs, its graph from ``body(g)``."""

    def __init__(self, name, in_size, in_channels, body, n_classes=3):
        self.name, self.family, self.in_size, self.in_channels = name, "tiny", in_size, in_channels
        self.body = body
        self.classes = tuple(f"c{i}" for i in range(n_classes))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return dict(name=self.name, family=self.family, in_size=self.in_size,
                    in_channels=self.in_channels, classes=list(self.classes))

    def layers(self) -> list[dict]:
        g = GraphBuilder(self.in_size, self.in_channels, 8)
        self.body(g)
        g.dense("logits", self.n_classes, w_bits=4, logits=True)
        return g.layers


def _convs(g):
    g.conv("k5", 3, 5, w_bits=2, a_bits=3)                          # 13x13x1 -> 13x13x3
    g.conv("k3s2", 4, 3, stride=2, w_bits=3, a_bits=4)              # odd 13 -> 7
    g.conv("k1", 6, 1, w_bits=8, a_bits=8, relu=False)              # signed out
    g.conv("k3s2p0", 2, 3, stride=2, pad=0, w_bits=4, a_bits=2)     # signed in, 7 -> 3
    g.conv("k2p1", 4, 2, pad=1, w_bits=2, a_bits=5)                 # even kernel, 3 -> 4


def _depthwise(g):
    g.dwconv("dw3", 3, 1, w_bits=2, a_bits=4)                       # 11x11x3
    g.dwconv("dw5s2", 5, 2, w_bits=4, a_bits=3, relu=False)         # 11 -> 6, signed
    g.maxpool("pool3s2", 3, 2)                                      # overlapping, signed, 6 -> 2
    g.conv("pw", 6, 1, w_bits=8, a_bits=8)
    g.maxpool("pool2s1", 2, 1)                                      # 2 -> 1


def _gap_dense(g):
    g.conv("c", 4, 3, w_bits=3, a_bits=5)                           # 7x7x2
    g.maxpool("pool2", 2)                                           # 7 -> 3, edge dropped
    g.gap("gap", a_bits=6)                                          # over 3x3 (odd)
    g.dense("fc_a", 6, w_bits=2, a_bits=3)
    g.dense("fc_b", 4, w_bits=8, a_bits=8, relu=False)


def _merge(g):
    c1 = g.conv("c1", 4, 3, w_bits=4, a_bits=4)                     # 10x10x2
    c2 = g.conv("c2", 4, 3, stride=2, w_bits=4, a_bits=3, relu=False, src=c1)  # 5x5
    up = g.upsample("up", src=c2)                                   # 10x10, signed
    q = g.quant("q", a_bits=6, relu=False, src=c1)
    s = g.add("add_sig", up, q, a_bits=5)                           # signed out
    u = g.add("add_relu", s, c1, a_bits=4, relu=True)               # c1 feeds three layers
    g.quant("q_relu", a_bits=2, relu=True, src=u)
    g.maxpool("pool", 2)


SPECS = {
    "convs": TinySpec("convs", 13, 1, _convs),
    "depthwise": TinySpec("depthwise", 11, 3, _depthwise, n_classes=4),
    "gap_dense": TinySpec("gap_dense", 7, 2, _gap_dense),
    "merge": TinySpec("merge", 10, 2, _merge, n_classes=5),
}
N_IMAGES = 6


def _largest_folding(layers) -> dict:
    """Largest PE and SIMD below 8 that divide each layer (not the logits layer,
    whose PE stays 1, so both foldings differ and still build fast)."""
    def best(n, cap=8):
        return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)
    out = {}
    for layer in layers[:-1]:
        out[layer["name"]] = {"pe": best(parallel.out_channels(layer)), "simd": best(parallel.fan_in(layer))}
    return out


def _build_one(base, spec, folding, features):
    model = random_model(spec, seed=5)
    model.save(base / "export")
    (base / "hls").mkdir(parents=True, exist_ok=True)
    if folding:
        parallel.save(base / "hls" / "parallel.json", _largest_folding(spec.layers()))
    generate(base / "export", base / "hls", features=features)
    return build(base / "hls")


@pytest.fixture(scope="session")
def libs(tmp_path_factory):
    """(spec name, folded?, features?) -> built library; all compiled at once, two at a time."""
    jobs = {(name, fold, False): SPECS[name] for name in SPECS for fold in (False, True)}
    jobs[("merge", False, True)] = SPECS["merge"]
    jobs[("gap_dense", True, True)] = SPECS["gap_dense"]
    root = tmp_path_factory.mktemp("layers")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(_build_one, root / "_".join(map(str, key)), spec, key[1], key[2])
                   for key, spec in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def _variants(model: IntModel) -> dict[str, IntModel]:
    """Weight sets that stress the arithmetic, all for one topology."""
    rng = np.random.default_rng(17)
    out = {"random": model}
    sat = {k: v.copy() for k, v in model.weights.items()}
    for layer in model.layers[:-1]:
        if f"{layer['name']}.b" in sat:   # biases far beyond every clamp limit, both signs
            sat[f"{layer['name']}.b"] = rng.choice([-1, 1], sat[f"{layer['name']}.b"].shape).astype(
                np.int32) * np.int32(1 << 24)
    out["saturating"] = IntModel(model.spec, sat)
    shifted = {k: v.copy() for k, v in model.weights.items()}
    for key in shifted:
        if re.search(r"\.shift(_a|_b)?$", key) and not key.startswith("logits."):
            shifted[key] = np.array(int(shifted[key]) + int(rng.integers(-4, 3)), np.int32)
    for layer in model.layers:
        if layer["type"] == "add":   # negative alignment shifts multiply
            shifted[f"{layer['name']}.shift_a"] = np.array(-1, np.int32)
            shifted[f"{layer['name']}.shift_b"] = np.array(-2, np.int32)
    out["shifted"] = IntModel(model.spec, shifted)
    return out


def _images(spec, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, spec.in_size, spec.in_size, spec.in_channels), dtype=np.uint8)
    x[0] = 255   # all-max input: saturates every layer that can saturate
    x[1] = 0
    return x


def _load(core, model):
    words = blob.pack(model)
    reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, words, 3))))
    assert int(reply.payload[0]) == blob.checksum(words)


@pytest.mark.parametrize("folded", [False, True], ids=["pe1simd1", "folded"])
@pytest.mark.parametrize("name", list(SPECS))
def test_layers_bit_exact(libs, name, folded):
    spec = SPECS[name]
    core = CSimCore(libs[(name, folded, False)])
    x = _images(spec, N_IMAGES, seed=len(name))
    for variant, model in _variants(random_model(spec, seed=5)).items():
        _load(core, model)
        ref = model.forward(x)
        for i in range(len(x)):
            reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[i]), i))))
            cls, logits = S.parse_result(reply, spec.n_classes)
            np.testing.assert_array_equal(logits, ref[i].astype(np.int32), err_msg=f"{variant} image {i}")
            assert cls == int(ref[i].argmax()), f"{variant} image {i}"


def test_folding_changes_no_bit(libs):
    """The folded build really is folded, and both builds reply identically."""
    for name, spec in SPECS.items():
        model = random_model(spec, seed=5)
        cores = [CSimCore(libs[(name, f, False)]) for f in (False, True)]
        replies = []
        for core in cores:
            _load(core, model)
            replies.append([core.transact(S.encode(S.OP_INFER, PX.pack_pixels(im), 1))
                            for im in _images(spec, 3, seed=2)])
        for a, b in zip(*replies):
            np.testing.assert_array_equal(a, b)
        cfg = (libs[(name, True, False)].parent.parent / "firmware" / "wq_config.h").read_text()
        assert re.search(r"static const unsigned (pe|simd) = [2-8];", cfg), f"{name}: nothing folded"


@pytest.mark.parametrize("key,layer_name", [(("merge", False, True), "pool"),
                                            (("gap_dense", True, True), "pool2")])  # GAP input
def test_feature_map_reply(libs, key, layer_name):
    spec = SPECS[key[0]]
    model = random_model(spec, seed=5)
    core = CSimCore(libs[key])
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 1))))
    assert q["capabilities"] & S.CAP_FEATURES and q["capabilities"] & S.CAP_LOGITS
    _load(core, model)
    layer = next(lay for lay in model.layers if lay["name"] == layer_name)
    shape = (layer["out_h"], layer["out_w"], layer["out_c"])
    x = _images(spec, 4, seed=8)
    acts = model.run(x)
    for i in range(len(x)):
        msg = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[i]), i))))
        cls, logits, feat = S.parse_result_with_features(msg, spec.n_classes, shape, signed=not layer["relu"])
        np.testing.assert_array_equal(logits, acts["logits"][i].reshape(-1).astype(np.int32))
        np.testing.assert_array_equal(feat, acts[layer_name][i])
        assert cls == int(acts["logits"][i].reshape(-1).argmax())
    # INFER_BATCH records carry the same feature map after the logits; the
    # longer records give a smaller max_batch (hls/batch.py).
    from hls import batch

    f_words = S.infer_words(int(np.prod(shape)))
    assert q["max_batch"] == batch.max_batch(spec.n_classes, f_words, int(np.prod(x.shape[1:])))
    status, cls, logits, feat = core.infer_batch(x, spec.n_classes, S.PACK_U8, tag=9,
                                                 feature_shape=shape, signed=not layer["relu"])
    assert (status == 0).all()
    np.testing.assert_array_equal(logits, acts["logits"].reshape(len(x), -1).astype(np.int32))
    np.testing.assert_array_equal(feat, acts[layer_name])
    np.testing.assert_array_equal(cls, acts["logits"].reshape(len(x), -1).argmax(axis=1))
    # Without the option, the capability is off and replies carry logits only.
    plain = CSimCore(libs[(key[0], key[1], False)])
    q = S.parse_query(S.decode(plain.transact(S.encode(S.OP_QUERY, [], 1))))
    assert not q["capabilities"] & S.CAP_FEATURES


def _config_members(cfg: str, layer: str) -> dict[str, int]:
    body = re.search(rf"struct {layer}_config : [^{{]*\{{(.*?)\n\}};", cfg, re.S).group(1)
    return {k: int(v) for k, v in re.findall(r"static const unsigned (\w+) = (\d+);", body)}


@pytest.mark.parametrize("folded", [False, True], ids=["pe1simd1", "folded"])
def test_low_bit_weights_are_packed(libs, folded):
    """A 2-bit layer stores 2 bits a weight: its memory is pe x wwords words of
    simd * 2 bits, n_weights * 2 bits in all (the config's static_assert says
    the same at compile time, and the library compiled)."""
    fw = libs[("convs", folded, False)].parent.parent / "firmware"
    cfg, top = (fw / "wq_config.h").read_text(), (fw / "waferq_top.cpp").read_text()
    m = _config_members(cfg, "k5")   # the 2-bit 5x5 conv
    assert m["w_bits"] == 2 and m["n_weights"] == 3 * 5 * 5 * 1
    assert m["word_bits"] == m["simd"] * 2
    assert m["pe"] * m["wwords"] * m["word_bits"] == m["n_weights"] * 2 == m["weight_mem_bits"]
    assert re.search(rf"typedef ap_uint<{m['simd'] * 2}> wword_t;", cfg)
    assert "static k5_config::wword_t k5_w[k5_config::pe][k5_config::wwords];" in top
    assert "static_assert(weight_mem_bits == n_weights * w_bits" in cfg


def test_parallel_json_is_checked(tmp_path):
    spec = SPECS["convs"]
    random_model(spec, seed=5).save(tmp_path / "export")
    (tmp_path / "hls").mkdir()
    (tmp_path / "hls" / "parallel.json").write_text(json.dumps({"layers": {"k5": {"pe": 2}}}))
    with pytest.raises(ValueError, match="pe=2 must divide"):
        generate(tmp_path / "export", tmp_path / "hls")
