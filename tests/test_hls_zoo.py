"""Every zoo model through the generated core in C simulation, bit for bit.

vgg_s, mobilenet_s and alexnet_s at 42x42, and xception_fpn (the buffer-zone
net, ``contract.zoo.buffer_spec``), each at W8A8, W4A4 and W2A2, with
``random_model`` weights: LOAD_WEIGHTS, then INFER on a few random images over
the stream protocol, logits and class equal to ``IntModel.forward``. The
bit widths are part of the topology hash, so each (family, bits) is its own
build; width 8 keeps the thirteen compiles and the runs near a minute.
xception_fpn is also built with the feature-map reply, which must carry the
``cam`` layer's output exactly.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import random_model
from contract.zoo import ZooSpec, buffer_spec

pytestmark = [pytest.mark.slow, pytest.mark.needs_gxx,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")]
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")

from hls.csim import CSimCore  # noqa: E402
from hls.csim_build import build  # noqa: E402
from hls.generate import generate  # noqa: E402

BITS = [(8, 8), (4, 4), (2, 2)]
FAMILIES = ("vgg_s", "mobilenet_s", "alexnet_s", "xception_fpn")
N_IMAGES = 3


def _spec(family: str, w: int, a: int):
    if family == "xception_fpn":
        return buffer_spec(w_bits=w, a_bits=a, in_size=32, width=8)
    return ZooSpec(family, in_size=42, w_bits=w, a_bits=a, width=8)


def _build(base, spec, features):
    random_model(spec, seed=3).save(base / "export")
    generate(base / "export", base / "hls", features=features)
    return build(base / "hls")


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    jobs = {(f, w, a, False): _spec(f, w, a) for f in FAMILIES for w, a in BITS}
    jobs[("xception_fpn", 4, 4, True)] = _spec("xception_fpn", 4, 4)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {k: pool.submit(_build, root / "_".join(map(str, k)), s, k[3]) for k, s in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def _load(core, model):
    words = blob.pack(model)
    reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, words, 1))))
    assert int(reply.payload[0]) == blob.checksum(words)


def _images(spec, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (N_IMAGES, spec.in_size, spec.in_size, spec.in_channels), dtype=np.uint8)


@pytest.mark.parametrize("w,a", BITS, ids=[f"w{w}a{a}" for w, a in BITS])
@pytest.mark.parametrize("family", FAMILIES)
def test_zoo_bit_exact(libs, family, w, a):
    spec = _spec(family, w, a)
    model = random_model(spec, seed=3)
    core = CSimCore(libs[(family, w, a, False)])
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 1))))
    assert q["topology_hash"] == model.topology_hash and q["blob_words"] == blob.blob_words(model.layers)
    _load(core, model)
    x = _images(spec, seed=w)
    ref = model.forward(x)
    for i in range(len(x)):
        reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[i]), i))))
        cls, logits = S.parse_result(reply, spec.n_classes)
        np.testing.assert_array_equal(logits, ref[i].astype(np.int32), err_msg=f"image {i}")
        assert cls == int(ref[i].argmax())


def test_xception_cam_features(libs):
    spec = _spec("xception_fpn", 4, 4)
    model = random_model(spec, seed=3)
    core = CSimCore(libs[("xception_fpn", 4, 4, True)])
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 1))))
    assert q["capabilities"] & S.CAP_FEATURES
    _load(core, model)
    cam = next(layer for layer in model.layers if layer["name"] == "cam")
    x = _images(spec, seed=5)
    acts = model.run(x)
    for i in range(len(x)):
        msg = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[i]), i))))
        cls, logits, feat = S.parse_result_with_features(
            msg, spec.n_classes, (cam["out_h"], cam["out_w"], cam["out_c"]), signed=not cam["relu"])
        np.testing.assert_array_equal(feat, acts["cam"][i])
        np.testing.assert_array_equal(logits, acts["fc"][i].reshape(-1).astype(np.int32))
        assert cls == int(acts["fc"][i].reshape(-1).argmax())
