"""The generated HLS core in C simulation against the Python references:
bit-exact inference against contract.intmodel, and reply-for-reply agreement with
hls.refcore.RefCore on well-formed and malformed messages."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec

pytestmark = [pytest.mark.needs_gxx,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")]

csim = pytest.importorskip("hls.csim", reason="hls.csim needs numpy and ctypes")
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")

from hls.csim import CSimCore  # noqa: E402
from hls.refcore import RefCore  # noqa: E402
from csim_helpers import batch_images, load_weights  # noqa: E402

SPECS = {
    "w8a8": CNNSpec.uniform(8, 8),
    "w4a4": CNNSpec.uniform(4, 4),
    "w2a2": CNNSpec.uniform(2, 2),
    "mixed": CNNSpec(name="mixed", w_bits=(8, 3, 2, 4), a_bits=(2, 5, 8)),
    "in64": CNNSpec(name="in64", in_size=64, channels=(4, 8), w_bits=(5, 6, 7), a_bits=(3, 6)),
    # 21*21*3 pixels is not a multiple of 4, and 21 and 10 pool with a dropped edge.
    "odd": CNNSpec(name="odd", in_size=21, in_channels=3, channels=(4, 6), w_bits=(6, 7, 5),
                   a_bits=(5, 4)),
    # The real-map recipe's shape: a 1x1 die decoder (2 bits) in front of the first
    # conv, and a block of two convs (block_convs).
    "die": CNNSpec(name="die", in_size=24, channels=(4, 8), w_bits=(4, 4, 4, 4), a_bits=(4, 4, 4),
                   die_channels=True, block_convs=(1, 2)),
}
N_IMAGES = 32


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """name -> (model, path of the built library), each compiled once per session."""
    cache = {}

    def get(name: str):
        if name not in cache:
            base = tmp_path_factory.mktemp(name)
            model = random_model(SPECS[name], seed=len(cache) + 1)
            model.save(base / "export")
            core = CSimCore.for_model(base / "export", base / "hls")
            cache[name] = (IntModel.load(base / "export"), core, base / "hls" / "csim" / "libwaferq_csim.so")
        return cache[name]
    return get


def _images(spec: CNNSpec, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, spec.in_size, spec.in_size, spec.in_channels), dtype=np.uint8)


def _infer(core: CSimCore, image: np.ndarray, n_classes: int, tag: int):
    reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(image), tag))))
    assert reply.tag == tag
    return S.parse_result(reply, n_classes)


def _check_bit_exact(core: CSimCore, model: IntModel, images: np.ndarray) -> None:
    classes, logits = model.classify(images)
    for i, image in enumerate(images):
        cls, got = _infer(core, image, model.spec.n_classes, tag=i * 7919)
        # The reply carries int32 words; the reference computes in int64.
        np.testing.assert_array_equal(got, logits[i].astype(np.int64).astype(np.int32),
                                      err_msg=f"image {i} logits")
        assert cls == classes[i], f"image {i}: class {cls} != reference {classes[i]}"


@pytest.mark.parametrize("name", list(SPECS))
def test_infer_bit_exact(builds, name):
    model, core, _ = builds(name)
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 1))))
    assert q["topology_hash"] == model.topology_hash
    assert q["blob_words"] == blob.blob_words(model.layers)
    load_weights(core, model)
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 2))))
    assert q["weights_loaded"] == 1 and q["weights_checksum"] == blob.checksum(blob.pack(model))
    _check_bit_exact(core, model, _images(model.spec, N_IMAGES, seed=len(name)))


def test_edge_arithmetic(builds):
    """Runtime weights that hit the corners: a negative shift (multiply), shift 0,
    a huge shift, logits that wrap int32, and ties in argmax."""
    model, core, _ = builds("w4a4")
    w = {k: v.copy() for k, v in model.weights.items()}
    w["conv0.shift"] = np.array(-2, np.int32)
    w["conv1.shift"] = np.array(0, np.int32)
    w["conv2.shift"] = np.array(40, np.int32)           # every activation rounds to 0
    w["fc.b"] = np.array([2**31 - 1, -2**31, 2**31 - 1] + [0] * 6, np.int32)
    edge = IntModel(model.spec, w)
    load_weights(core, edge)
    _check_bit_exact(core, edge, _images(edge.spec, 4, seed=9))
    # All inputs to fc are 0 now, so logits are the biases: a tie at 0 and 2 -> class 0.
    cls, logits = _infer(core, _images(edge.spec, 1, seed=1)[0], 9, tag=3)
    assert cls == 0 and logits[0] == 2**31 - 1
    w["fc.b"] = np.array([1, 5, 3, 5, 5, 0, 0, 0, 0], np.int32)
    load_weights(core, IntModel(model.spec, w))
    assert _infer(core, _images(edge.spec, 1, seed=1)[0], 9, tag=4)[0] == 1


# --- malformed messages against the reference core --------------------------

def _with(words: np.ndarray, index: int, value: int, fix_checksum: bool = True) -> np.ndarray:
    w = words.copy()
    w[index] = value
    if fix_checksum:
        w[-1] = S.checksum(w[:-1])
    return w


def _msg(opcode_word: int, payload, tag: int, length: int | None = None) -> np.ndarray:
    payload = np.asarray(payload, np.uint32)
    body = np.concatenate([[opcode_word, payload.size if length is None else length, tag], payload])
    return np.concatenate([body, [S.checksum(body)]]).astype(np.uint32)


def _batch_cases(model: IntModel) -> dict:
    """INFER_BATCH requests, good and malformed (protocol/stream.py's order of checks)."""
    n_pix = int(np.prod(model.input_shape))
    rng = np.random.default_rng(21)
    states = rng.integers(0, 3, (3, *model.input_shape), dtype=np.uint8)
    spoiled = states.copy()
    spoiled[1].flat[n_pix // 2] = 3
    die2 = PX.encode_infer_batch(states, S.PACK_DIE2, 30)
    u8 = PX.encode_infer_batch(_images(model.spec, 2, seed=22), S.PACK_U8, 31)
    body = die2[S.HEADER_WORDS:-1]
    iw = S.image_words(n_pix, S.PACK_DIE2)
    hdr = S.header_word(S.OP_INFER_BATCH)

    def word0(n, packing):
        return np.concatenate([[S.batch_word(n, packing)], body[1:]])
    return {
        "batch_die2": (True, [die2]),
        "batch_u8": (True, [u8]),
        "batch_bad_pixel": (True, [PX.encode_infer_batch(spoiled, S.PACK_DIE2, 32)]),
        "batch_before_load": (False, [die2]),
        "batch_empty": (True, [_msg(hdr, [], 33)]),
        "batch_packing_7": (True, [_msg(hdr, word0(3, 7), 34)]),
        "batch_high_bits": (True, [_msg(hdr, np.concatenate([[S.batch_word(3, 1) | 1 << 28], body[1:]]), 34)]),
        "batch_n_zero": (True, [_msg(hdr, word0(0, S.PACK_DIE2), 35)]),
        "batch_n_over_max": (True, [_msg(hdr, word0(0xFFFF, S.PACK_DIE2), 35)]),
        "batch_n_says_more": (True, [_msg(hdr, word0(4, S.PACK_DIE2), 36)]),
        "batch_n_says_fewer": (True, [_msg(hdr, word0(2, S.PACK_DIE2), 36)]),
        "batch_die2_sized_u8": (True, [_msg(hdr, word0(3, S.PACK_U8), 37)]),
        "batch_bad_checksum": (True, [_with(die2, -1, die2[-1] ^ 1, False)]),
        "batch_cut_in_image": (True, [_msg(hdr, body[:1 + iw + 5], 38, length=body.size)]),
        "batch_cut_after_word0": (True, [_msg(hdr, body[:1], 38, length=body.size)]),
        "batch_long_payload": (True, [_msg(hdr, np.concatenate([body, [5, 6, 7]]), 39, length=body.size)]),
        "batch_old_version": (True, [_with(die2, 0, S.header_word(S.OP_INFER_BATCH, version=1))]),
    }


def _cases(model: IntModel):
    """name -> (load weights first?, list of requests). A request is a word array
    (TLAST on its last word) or a (words, last_flags) pair."""
    blob_w = blob.pack(model)
    n_infer = S.infer_words(int(np.prod(model.input_shape)))
    img = PX.pack_pixels(_images(model.spec, 1, seed=3)[0])
    hdr = S.header_word
    good_load = S.encode(S.OP_LOAD_WEIGHTS, blob_w, 11)
    trunc_load = np.concatenate([good_load[:40], [S.checksum(good_load[:40])]]).astype(np.uint32)
    long_load = _msg(hdr(S.OP_LOAD_WEIGHTS), np.concatenate([blob_w, [7, 8]]), 12, len(blob_w))
    return {
        "bad_magic": (True, [_with(S.encode(S.OP_QUERY, [], 5), 0, hdr(S.OP_QUERY, magic=0x1234))]),
        "bad_magic_bad_sum": (True, [_with(S.encode(S.OP_INFER, img, 5), 0, 0xFFFF0103, False)]),
        "bad_version": (True, [_with(S.encode(S.OP_QUERY, [], 6), 0, hdr(S.OP_QUERY, version=1))]),
        "opcode_07": (True, [_msg(hdr(0x07), [], 7)]),
        "opcode_reply_83": (True, [_msg(hdr(0x83), [1, 2], 8)]),
        "opcode_error_ff": (True, [_msg(hdr(S.OP_ERROR), [1, 0], 8)]),
        "opcode_00": (True, [_msg(hdr(0x00), [], 8)]),
        "one_word": (True, [np.array([hdr(S.OP_QUERY)], np.uint32)]),
        "two_words": (True, [np.array([hdr(S.OP_QUERY), 0], np.uint32)]),
        "three_words": (True, [np.array([hdr(S.OP_QUERY), 0, 99], np.uint32)]),
        "three_words_bad_magic": (True, [np.array([5, 0, 99], np.uint32)]),
        "query_short_payload": (True, [_msg(hdr(S.OP_QUERY), [], 9, length=3)]),
        "query_long_payload": (True, [_msg(hdr(S.OP_QUERY), [1, 2], 9, length=0)]),
        "query_nonzero_length": (True, [_msg(hdr(S.OP_QUERY), [1], 9)]),
        "infer_short_length": (True, [_msg(hdr(S.OP_INFER), img[:-1], 10)]),
        "infer_long_payload": (True, [_msg(hdr(S.OP_INFER), np.concatenate([img, [1]]), 10, n_infer)]),
        "infer_huge_length": (True, [_msg(hdr(S.OP_INFER), img, 10, length=0xFFFFFFFF)]),
        "load_wrong_length": (True, [_msg(hdr(S.OP_LOAD_WEIGHTS), blob_w[:-1], 13)]),
        "load_long_payload": (True, [long_load]),
        "load_truncated_then_infer": (True, [trunc_load, S.encode(S.OP_INFER, img, 14)]),
        "load_bad_checksum": (True, [_with(good_load, -1, good_load[-1] ^ 4, False),
                                     S.encode(S.OP_QUERY, [], 15)]),
        "query_bad_checksum": (True, [_with(S.encode(S.OP_QUERY, [], 16), -1, 0, False)]),
        "infer_bad_checksum": (True, [_with(S.encode(S.OP_INFER, img, 17), -1, 1, False)]),
        "infer_before_load": (False, [S.encode(S.OP_INFER, img, 18)]),
        **_batch_cases(model),
        "no_tlast_then_query": (True, [(np.concatenate([S.encode(S.OP_QUERY, [], 19),
                                                        S.encode(S.OP_QUERY, [], 20)]),
                                        [0, 0, 0, 0, 0, 0, 0, 1])]),
        "tlast_early_in_header": (True, [(S.encode(S.OP_QUERY, [], 21), [0, 1, 0, 1])]),
    }


@pytest.fixture(scope="module")
def malformed_setup(builds):
    model, _, lib = builds("w4a4")
    return model, lib, _cases(model)


@pytest.mark.parametrize("case", list(_cases(random_model(SPECS["w4a4"]))))
def test_malformed_matches_refcore(malformed_setup, case):
    model, lib, cases = malformed_setup
    load_first, requests = cases[case]
    core, ref = CSimCore(lib), RefCore(model.spec)  # a fresh core: its own copy of the library
    good_load = S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 1)
    if load_first:
        np.testing.assert_array_equal(core.transact(good_load), ref.handle(good_load))
    for req in requests:
        words, flags = req if isinstance(req, tuple) else (req, [0] * (len(req) - 1) + [1])
        words = np.asarray(words, np.uint32)
        replies = core.send_raw(words, flags)
        ends = np.flatnonzero(np.asarray(flags)) + 1
        expected = [ref.handle(m) for m in np.split(words, ends[:-1])]
        assert len(replies) == len(expected)
        for got, want in zip(replies, expected):
            np.testing.assert_array_equal(got, want, err_msg=f"{case}: C-sim {got} vs ref {want}")
    # The core never wedges: a good QUERY, (re)load and INFER still work.
    for req in (S.encode(S.OP_QUERY, [], 100), good_load,
                S.encode(S.OP_INFER, PX.pack_pixels(_images(model.spec, 1, seed=4)[0]), 101)):
        np.testing.assert_array_equal(core.transact(req), ref.handle(req), err_msg=f"{case}: after")


def test_fresh_core_reports_no_weights(malformed_setup):
    model, lib, _ = malformed_setup
    q = S.parse_query(S.decode(CSimCore(lib).transact(S.encode(S.OP_QUERY, [], 0))))
    assert q["weights_loaded"] == 0 and q["weights_checksum"] == 0


def test_no_complete_message_gives_no_reply(malformed_setup):
    _, lib, _ = malformed_setup
    core = CSimCore(lib)
    assert core.send_raw(S.encode(S.OP_QUERY, [], 1), [0, 0, 0, 0]) == []
    core.reset()  # drops the unterminated words
    reply = S.decode(core.transact(S.encode(S.OP_QUERY, [], 2)))
    assert reply.opcode == S.OP_QUERY | S.REPLY_BIT and reply.tag == 2


def test_build_is_cached(builds):
    from hls.csim_build import build

    _, _, lib = builds("w4a4")
    mtime = lib.stat().st_mtime_ns
    assert build(lib.parent.parent) == lib and lib.stat().st_mtime_ns == mtime


# --- cut messages and the CSR soft reset ------------------------------------------------
# A transfer aborted mid-message leaves the core waiting for a word that never
# comes; the host then pulses the CSR soft reset, which (block design) resets the
# core and empties both FIFOs. CSimCore.cut runs the core up to that wait.

@pytest.mark.parametrize("reset_state", [True, False], ids=["reset_pragma", "statics_kept"])
def test_cut_load_then_infer_gets_no_weights(malformed_setup, reset_state):
    """A LOAD_WEIGHTS cut halfway leaves a half-written weight memory: the next
    INFER must get NO_WEIGHTS, not logits from a mix of two models. With
    ``statics_kept`` the core's state survives the reset (a static without a
    reset pragma does): the load itself must have cleared weights_loaded."""
    model, lib, _ = malformed_setup
    other = random_model(model.spec, seed=99)  # same topology, other weights
    core = CSimCore(lib)
    load_weights(core, model)
    image = _images(model.spec, 1, seed=8)[0]
    _infer(core, image, model.spec.n_classes, tag=1)
    cut = S.encode(S.OP_LOAD_WEIGHTS, blob.pack(other), 2)
    core.cut(cut[:len(cut) // 2])
    core.soft_reset(reset_state=reset_state)
    reply = S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(image), 3)))
    assert reply.opcode == S.OP_ERROR and reply.tag == 3, reply
    assert int(reply.payload[0]) == S.ERR_NO_WEIGHTS
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 4))))
    assert q["weights_loaded"] == 0 and q["weights_checksum"] == 0
    load_weights(core, model)  # a whole load afterwards works bit for bit
    _check_bit_exact(core, model, _images(model.spec, 2, seed=9))


@pytest.mark.parametrize("keep", [3, 5, 40], ids=["in_header", "in_payload", "late_payload"])
def test_cut_infer_then_new_request_gets_its_own_reply(malformed_setup, keep):
    """After a cut INFER and the soft reset, the next request gets its own reply:
    nothing of the cut message is left to be read as part of it."""
    model, lib, _ = malformed_setup
    core = CSimCore(lib)
    load_weights(core, model)
    images = _images(model.spec, 2, seed=10)
    cut = S.encode(S.OP_INFER, PX.pack_pixels(images[0]), 5)
    core.cut(cut[:keep])
    core.soft_reset()
    q = S.decode(core.transact(S.encode(S.OP_QUERY, [], 6)))
    assert q.opcode == S.OP_QUERY | S.REPLY_BIT and q.tag == 6
    # the reset pragma returns the core to "no weights": the host reloads on NO_WEIGHTS
    assert S.parse_query(q)["weights_loaded"] == 0
    load_weights(core, model)
    _check_bit_exact(core, model, images[1:])
    # a core whose state survives the reset: the cut INFER touched no weight
    core.cut(cut[:keep])
    core.soft_reset(reset_state=False)
    _check_bit_exact(core, model, images[1:])


def test_reply_words_carry_tkeep_and_tstrb(malformed_setup):
    """Every reply beat has TKEEP = TSTRB = 0xF (CSimCore checks each word it pops),
    including an error reply."""
    _, lib, _ = malformed_setup
    core = CSimCore(lib)
    reply = S.decode(core.transact(S.encode(S.OP_INFER, [0], 1)))
    assert reply.opcode == S.OP_ERROR


# --- INFER_BATCH: bit-exact for every batch size, both packings --------------------------

@pytest.mark.parametrize("name", ["w4a4", "odd", "die"])
@pytest.mark.parametrize("packing", [S.PACK_U8, S.PACK_DIE2], ids=["u8", "die2"])
def test_infer_batch_bit_exact(builds, name, packing):
    """Batches of 1, 16 and 64 equal IntModel.forward and RefCore word for word;
    a 3-channel core refuses PACK_DIE2 as RefCore does."""
    model, core, _ = builds(name)
    load_weights(core, model)
    ref = RefCore(model.spec)
    ref.handle(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 1))
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 1))))
    assert q["capabilities"] & S.CAP_BATCH and q["max_batch"] == ref.max_batch >= 256
    assert q["packings"] == ref.packings
    for n in (1, 16, 64):
        images, pixels = batch_images(model, n, packing, seed=n)
        req = PX.encode_infer_batch(images, packing, tag=n)
        reply = core.transact(req)
        np.testing.assert_array_equal(reply, ref.handle(req), err_msg=f"batch of {n}")
        if not (q["packings"] >> packing) & 1:
            assert S.decode(reply).payload.tolist() == [S.ERR_BAD_PACKING, packing]
            continue
        status, cls, logits = core.infer_batch(images, model.spec.n_classes, packing, tag=n)
        want_cls, want = model.classify(pixels)
        assert (status == 0).all()
        np.testing.assert_array_equal(logits, want.astype(np.int64).astype(np.int32))
        np.testing.assert_array_equal(cls, want_cls)
