"""Imported graphs (GraphSpec, family "graph") through the generated core in C
simulation, bit for bit against ``contract.intmodel``.

Random-weight models shaped like BNN-PYNQ's: a reduced LFC-like dense stack
(non-square 1- or 2-bit input), a reduced TFC-like one (two channels, 3-bit
codes), a small CNV-like conv stack (8-bit RGB, valid 3x3 convs, a pool, one
shift-requantized 1-bit layer among the threshold ones), each at W1A1, W1A2
and W2A2, plus one full-size TFC 784-64-64-64-10 at W1A1. Hidden layers end in
FINN MultiThreshold (``act`` "thresholds"); some layers are folded (PE, SIMD >
1) so the threshold banks and the 1-bit weight slices are routed across PEs.
Each model is one build (the bit widths are in the topology hash); the builds
run two at a time and are shared by every test below.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.graph import GraphBuilder
from contract.graphspec import GraphSpec
from contract.intmodel import IntModel, random_model

pytestmark = [pytest.mark.slow, pytest.mark.needs_gxx,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")]
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")

from hls import parallel  # noqa: E402
from hls.csim import CSimCore  # noqa: E402
from hls.csim_build import build  # noqa: E402
from hls.generate import generate  # noqa: E402
from hls.inputs import random_codes  # noqa: E402
from hls.refcore import RefCore  # noqa: E402

BITS = [(1, 1), (1, 2), (2, 2)]
CLASSES = tuple(f"c{i}" for i in range(10))
N_IMAGES = 4


def _fc_stack(name, h, w, c, in_bits, widths, wb, ab):
    g = GraphBuilder(h, c, in_bits, in_w=w)
    for i, n in enumerate(widths):
        g.dense(f"fc{i}", n, w_bits=wb, a_bits=ab, thresholds=True)
    g.dense("out", len(CLASSES), w_bits=wb, logits=True)
    return GraphSpec(f"{name}_{wb}w{ab}a", h, w, c, CLASSES, tuple(g.layers), in_bits=in_bits)


def lfc_like(wb, ab):
    return _fc_stack("lfc_r", 16, 12, 1, ab, (128, 128, 128), wb, ab)


def tfc_like(wb, ab):
    return _fc_stack("tfc_r", 9, 7, 2, 3, (32, 32, 32), wb, ab)


def tfc_full():
    return _fc_stack("tfc", 28, 28, 1, 1, (64, 64, 64), 1, 1)


def cnv_like(wb, ab):
    g = GraphBuilder(14, 3, 8, in_w=12)
    g.conv("conv0", 8, 3, pad=0, w_bits=wb, a_bits=ab, thresholds=True)
    g.conv("conv1", 8, 3, pad=0, w_bits=wb, a_bits=ab, thresholds=True)
    g.maxpool("pool0")
    g.conv("conv2", 16, 3, pad=0, w_bits=wb, a_bits=ab, thresholds=True)
    g.dense("fc0", 32, w_bits=wb, a_bits=ab)          # shift requant on 1-bit weights
    g.dense("fc1", 24, w_bits=wb, a_bits=ab, thresholds=True)
    g.dense("out", len(CLASSES), w_bits=wb, logits=True)
    return GraphSpec(f"cnv_r_{wb}w{ab}a", 14, 12, 3, CLASSES, tuple(g.layers))


FAMILIES = {"lfc": lfc_like, "tfc": tfc_like, "cnv": cnv_like}
FOLDING = {
    "lfc": {"fc0": {"pe": 4, "simd": 16}, "fc1": {"pe": 2, "simd": 32}},
    "tfc": {"fc0": {"pe": 2, "simd": 7}, "out": {"pe": 2, "simd": 4}},
    "cnv": {"conv1": {"pe": 2, "simd": 8}, "conv2": {"pe": 4, "simd": 9}, "fc1": {"pe": 3, "simd": 4}},
    "tfc_full": {"fc0": {"pe": 4, "simd": 16}},
}
CASES = {(f, w, a): FAMILIES[f](w, a) for f in FAMILIES for w, a in BITS}
CASES[("tfc_full", 1, 1)] = tfc_full()


def _build(base, key, spec):
    random_model(spec, seed=7).save(base / "export")
    (base / "hls").mkdir(parents=True, exist_ok=True)
    parallel.save(base / "hls" / "parallel.json", FOLDING[key[0]])
    generate(base / "export", base / "hls")
    return base, build(base / "hls")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futs = {k: pool.submit(_build, root / "_".join(map(str, k)), k, s) for k, s in CASES.items()}
        return {k: f.result() for k, f in futs.items()}


def _load(core, model):
    words = blob.pack(model)
    reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, words, 1))))
    assert int(reply.payload[0]) == blob.checksum(words)


def _images(spec, seed):
    x = random_codes(spec, N_IMAGES, np.random.default_rng(seed))
    x[0] = (1 << spec.in_bits) - 1      # the largest code everywhere
    return x


@pytest.mark.parametrize("key", list(CASES), ids=["_".join(map(str, k)) for k in CASES])
def test_graph_model_bit_exact(builds, key):
    spec = CASES[key]
    base, lib = builds[key]
    model = IntModel.load(base / "export")
    assert any(layer.get("act") == "thresholds" for layer in model.layers)
    core, ref = CSimCore(lib), RefCore(spec)
    query = S.encode(S.OP_QUERY, [], 1)
    q = S.parse_query(S.decode(core.transact(query)))
    assert (q["in_height"], q["in_width"], q["in_channels"]) == (spec.in_h, spec.in_w, spec.in_channels)
    assert q["topology_hash"] == model.topology_hash and q["blob_words"] == blob.blob_words(model.layers)
    np.testing.assert_array_equal(core.transact(query), ref.handle(query))
    load = S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 2)
    np.testing.assert_array_equal(core.transact(load), ref.handle(load))
    x = _images(spec, seed=sum(key[1:]))
    logits = model.forward(x)
    for i in range(len(x)):
        req = S.encode(S.OP_INFER, PX.pack_pixels(x[i]), 10 + i)
        reply = core.transact(req)
        cls, got = S.parse_result(S.raise_if_error(S.decode(reply)), spec.n_classes)
        np.testing.assert_array_equal(got, logits[i].astype(np.int32), err_msg=f"image {i}")
        assert cls == int(logits[i].argmax())
        np.testing.assert_array_equal(reply, ref.handle(req))


@pytest.mark.parametrize("key", [("lfc", 1, 1), ("tfc", 2, 2)], ids=["in_bits1", "in_bits3"])
def test_code_above_input_range_is_refused(builds, key):
    """A byte above 2**in_bits - 1 gets ERR_BAD_INPUT naming its index, from the
    core and its golden model alike, as IntModel refuses it; the next image is
    answered as usual."""
    spec = CASES[key]
    base, lib = builds[key]
    model = IntModel.load(base / "export")
    core, ref = CSimCore(lib), RefCore(spec)
    load = S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 2)
    core.transact(load), ref.handle(load)
    x = _images(spec, seed=3)
    bad = x[1].copy()
    flat = bad.reshape(-1)
    flat[37] = 1 << spec.in_bits
    flat[50] = 255
    with pytest.raises(ValueError, match="outside"):
        model.forward(bad[None])
    req = S.encode(S.OP_INFER, PX.pack_pixels(bad), 5)
    reply = core.transact(req)
    np.testing.assert_array_equal(reply, ref.handle(req))
    msg = S.decode(reply)
    assert msg.opcode == S.OP_ERROR and list(msg.payload) == [S.ERR_BAD_INPUT, 37]
    cls, got = S.parse_result(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[2]), 6))),
                              spec.n_classes)
    np.testing.assert_array_equal(got, model.forward(x[2:3])[0].astype(np.int32))


def test_make_csim_check_feeds_codes_within_in_bits(builds):
    """hls.check (make csim's bit-exact step) on an imported export: random
    codes of the model's shape and width, every one equal."""
    from hls.check import compare

    base, _ = builds[("lfc", 1, 2)]
    assert compare(base / "export", base / "hls", n=12) == (12, 12)


def test_estimate_cycles_match_cycle_csim_on_a_threshold_model(tmp_path):
    """hls.estimate's cycle model against the cycle-accounting C-sim on the
    folded CNV-like W1A2 model: threshold layers (no shift word) and 1-bit
    weights, layer by layer."""
    from hls import estimate as E
    from hls.cycles import measure

    spec = CASES[("cnv", 1, 2)]
    random_model(spec, seed=7).save(tmp_path / "export")
    (tmp_path / "hls").mkdir()
    parallel.save(tmp_path / "hls" / "parallel.json", FOLDING["cnv"])
    rep = measure(tmp_path / "export", tmp_path / "hls", n=1)
    assert rep["bit_exact"]
    est = E.estimate(spec.layers(), parallel.load(spec.layers(), tmp_path / "hls" / "parallel.json"))
    measured = {l["name"]: l["cycles"] for l in rep["layers"]}
    assert {r["name"]: r["cycles"] for r in est["layers"]} == {l["name"]: measured[l["name"]]
                                                              for l in spec.layers()}
    assert est["cycles"] == rep["cycles_per_inference"]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
def test_make_csim_on_an_imported_export():
    """`make csim MODEL=<name>` on build/<name>/export holding a GraphSpec export
    (what make import writes): generate, build, the bit-exact check on codes
    within in_bits and the cycle-accounting run all pass."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    name = f"_test_graph_csim_{os.getpid()}"
    base = root / "build" / name
    try:
        random_model(CASES[("tfc", 1, 2)], seed=7).save(base / "export")
        (base / "hls").mkdir(parents=True)
        parallel.save(base / "hls" / "parallel.json", FOLDING["tfc"])
        proc = subprocess.run(["make", "--no-print-directory", "csim", f"MODEL={name}"], cwd=root,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "C-sim equals the integer reference on 200/200 inputs" in proc.stdout
        assert (base / "hls" / "cycles.json").is_file()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_batch_image_with_a_code_above_input_range_gets_its_own_record(builds):
    """INFER_BATCH on an imported model: the image with an out-of-range code
    gets a BAD_INPUT record, its neighbours their results, bit for bit as the
    golden model and IntModel; PACK_DIE2 is not offered below 8-bit codes."""
    spec = CASES[("tfc", 2, 2)]
    base, lib = builds[("tfc", 2, 2)]
    model = IntModel.load(base / "export")
    core, ref = CSimCore(lib), RefCore(spec)
    load = S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 2)
    core.transact(load), ref.handle(load)
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 3))))
    assert q["packings"] == 1 << S.PACK_U8
    x = _images(spec, seed=4)[:3].copy()
    want = model.forward(x)
    x[1].reshape(-1)[5] = 1 << spec.in_bits
    req = PX.encode_infer_batch(x, S.PACK_U8, 9)
    reply = core.transact(req)
    np.testing.assert_array_equal(reply, ref.handle(req))
    status, cls, logits = S.parse_batch_reply(S.decode(reply), 3, spec.n_classes)[:3]
    assert list(status) == [0, S.ERR_BAD_INPUT, 0]
    np.testing.assert_array_equal(logits[[0, 2]], want[[0, 2]].astype(np.int32))
    assert not logits[1].any()
