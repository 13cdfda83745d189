"""The golden core (hls.refcore) on INFER_BATCH: results bit for bit against
contract.intmodel, per-image BAD_PIXEL records, and every whole-message error
in protocol/stream.py's order."""
from __future__ import annotations

import numpy as np
import pytest

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import random_model
from contract.spec import CNNSpec
from hls import batch
from hls.refcore import RefCore

SPEC = CNNSpec.uniform(4, 4, in_size=16, channels=(3, 5))


@pytest.fixture(scope="module")
def model():
    return random_model(SPEC, seed=5)


def _core(model, load: bool = True) -> RefCore:
    core = RefCore(model.spec)
    if load:
        S.raise_if_error(S.decode(core.handle(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 1))))
    return core


def _states(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, (n, *SPEC_SHAPE), dtype=np.uint8)


SPEC_SHAPE = (SPEC.in_size, SPEC.in_size, SPEC.in_channels)


def test_query_reports_batch(model):
    q = S.parse_query(S.decode(_core(model, load=False).handle(S.encode(S.OP_QUERY, [], 1))))
    assert q["capabilities"] & S.CAP_BATCH
    assert q["packings"] == (1 << S.PACK_U8) | (1 << S.PACK_DIE2)
    assert q["max_batch"] == batch.max_batch(SPEC.n_classes, 0, 16 * 16) >= 256
    rgb = RefCore(CNNSpec(name="rgb", in_size=16, in_channels=3, channels=(3, 5),
                          w_bits=(4, 4, 4), a_bits=(4, 4)))
    assert S.parse_query(S.decode(rgb.handle(S.encode(S.OP_QUERY, [], 1))))["packings"] == 1


def test_max_batch_follows_the_guard_and_the_buffer():
    assert batch.max_batch(9, 0, 42 * 42) == 1024      # the wafer-map CNN, 11-word records
    assert batch.max_batch(9, 0, 42 * 42, guard_words=4096) == 256
    assert batch.max_batch(9, 800, 42 * 42) == 16      # 811-word records with features
    with pytest.raises(ValueError, match="does not fit"):
        batch.max_batch(9, 20_000, 42 * 42)


@pytest.mark.parametrize("packing", [S.PACK_U8, S.PACK_DIE2])
@pytest.mark.parametrize("n", [1, 16, 64])
def test_batch_equals_the_integer_model(model, packing, n):
    states = _states(n, seed=n + packing)
    pixels = PX.pixels_from_die_states(states)
    if packing == S.PACK_U8:   # any byte, not only die codes
        pixels = np.random.default_rng(n).integers(0, 256, pixels.shape, dtype=np.uint8)
    images = pixels if packing == S.PACK_U8 else states
    reply = S.decode(_core(model).handle(PX.encode_infer_batch(images, packing, tag=n)))
    assert reply.tag == n
    status, cls, logits = S.parse_batch_reply(reply, n, SPEC.n_classes)
    want_cls, want = model.classify(pixels)
    assert (status == 0).all()
    np.testing.assert_array_equal(logits, want.astype(np.int64).astype(np.int32))
    np.testing.assert_array_equal(cls, want_cls)


def test_max_batch_is_taken_and_one_more_is_not(model):
    core = _core(model)
    m = core.max_batch
    states = _states(m + 1, seed=2)
    reply = S.decode(core.handle(PX.encode_infer_batch(states[:m], S.PACK_DIE2, 4)))
    status, cls, logits = S.parse_batch_reply(reply, m, SPEC.n_classes)
    np.testing.assert_array_equal(logits[-3:], model.forward(PX.pixels_from_die_states(states[m - 3:m])))
    err = S.decode(core.handle(PX.encode_infer_batch(states, S.PACK_DIE2, 5)))
    assert err.opcode == S.OP_ERROR and err.payload.tolist() == [S.ERR_BAD_BATCH, m + 1]


def test_bad_pixel_gives_that_image_alone_an_error_record(model):
    states = _states(9, seed=7)
    states[4, 3, 5, 0] = 3
    reply = S.decode(_core(model).handle(PX.encode_infer_batch(states, S.PACK_DIE2, 6)))
    status, cls, logits = S.parse_batch_reply(reply, 9, SPEC.n_classes)
    assert status.tolist() == [0] * 4 + [S.ERR_BAD_PIXEL] + [0] * 4
    assert cls[4] == 0 and (logits[4] == 0).all()
    good = np.r_[0:4, 5:9]
    np.testing.assert_array_equal(logits[good], model.forward(PX.pixels_from_die_states(states[good])))


def test_a_3_in_the_padding_is_ignored(model):
    n_pix = int(np.prod(SPEC_SHAPE))
    assert n_pix % 16 == 0  # 16x16: no padding, so build a message with a spoiled pad by hand
    spec = CNNSpec.uniform(4, 4, in_size=15, channels=(3, 5))
    m = random_model(spec, seed=1)
    core = RefCore(spec)
    core.handle(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(m), 1))
    states = np.random.default_rng(0).integers(0, 3, (2, 15, 15, 1), dtype=np.uint8)
    words = PX.pack_die2(states)
    words[:, -1] |= np.uint32(3 << 30)              # pixel 239 of 225: padding
    req = S.encode(S.OP_INFER_BATCH, np.concatenate([[S.batch_word(2, S.PACK_DIE2)], words.ravel()]), 2)
    status, _, logits = S.parse_batch_reply(S.decode(core.handle(req)), 2, spec.n_classes)
    assert status.tolist() == [0, 0]
    np.testing.assert_array_equal(logits, m.forward(PX.pixels_from_die_states(states)))


def _raw(payload, tag=9, length=None, fix_sum=True, version=S.VERSION):
    payload = np.asarray(payload, np.uint32)
    body = np.concatenate([[S.header_word(S.OP_INFER_BATCH, version=version),
                            payload.size if length is None else length, tag], payload])
    return np.concatenate([body, [S.checksum(body) if fix_sum else 0]]).astype(np.uint32)


def _whole_message_cases():
    iw = S.image_words(16 * 16, S.PACK_DIE2)
    two = np.zeros(2 * iw, np.uint32)
    return {
        "empty": (_raw([]), S.ERR_BAD_LENGTH, 0),
        "unknown_packing": (_raw(np.r_[[S.batch_word(2, 5)], two]), S.ERR_BAD_PACKING, 5),
        "high_bits_set": (_raw(np.r_[[S.batch_word(2, 1) | 1 << 24], two]), S.ERR_BAD_PACKING, 0x101),
        "n_zero": (_raw(np.r_[[S.batch_word(0, 1)], two]), S.ERR_BAD_BATCH, 0),
        "n_short": (_raw(np.r_[[S.batch_word(3, 1)], two]), S.ERR_BAD_LENGTH, 1 + 2 * iw),
        "n_long": (_raw(np.r_[[S.batch_word(1, 1)], two]), S.ERR_BAD_LENGTH, 1 + 2 * iw),
        "u8_sized_as_die2": (_raw(np.r_[[S.batch_word(2, 0)], two]), S.ERR_BAD_LENGTH, 1 + 2 * iw),
        "length_field_short": (_raw(np.r_[[S.batch_word(2, 1)], two], length=2), S.ERR_BAD_LENGTH,
                               2 * iw + 5),
        "bad_checksum": (_raw(np.r_[[S.batch_word(2, 1)], two], fix_sum=False), S.ERR_BAD_CHECKSUM, 0),
        "old_version": (_raw(np.r_[[S.batch_word(2, 1)], two], version=1), S.ERR_BAD_VERSION, 1),
    }


@pytest.mark.parametrize("case", list(_whole_message_cases()))
def test_whole_message_errors(model, case):
    req, code, detail = _whole_message_cases()[case]
    reply = S.decode(_core(model).handle(req))
    assert reply.opcode == S.OP_ERROR and reply.tag == 9
    assert reply.payload.tolist() == [code, detail]


def test_no_weights_comes_after_the_checksum(model):
    req = PX.encode_infer_batch(_states(2, seed=1), S.PACK_DIE2, 3)
    core = _core(model, load=False)
    assert S.decode(core.handle(req)).payload.tolist() == [S.ERR_NO_WEIGHTS, 0]
    bad = req.copy()
    bad[-1] ^= 1
    assert S.decode(core.handle(bad)).payload.tolist() == [S.ERR_BAD_CHECKSUM, 0]


def test_die2_refused_by_a_3_channel_core():
    spec = CNNSpec(name="rgb", in_size=8, in_channels=3, channels=(3, 5), w_bits=(4, 4, 4), a_bits=(4, 4))
    m = random_model(spec, seed=2)
    core = RefCore(spec)
    core.handle(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(m), 1))
    states = np.zeros((2, 8, 8, 3), np.uint8)
    reply = S.decode(core.handle(PX.encode_infer_batch(states, S.PACK_DIE2, 2)))
    assert reply.payload.tolist() == [S.ERR_BAD_PACKING, S.PACK_DIE2]
    pixels = np.random.default_rng(3).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    reply = S.decode(core.handle(PX.encode_infer_batch(pixels, S.PACK_U8, 2)))
    np.testing.assert_array_equal(S.parse_batch_reply(reply, 2, spec.n_classes)[2], m.forward(pixels))
