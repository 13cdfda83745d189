"""The board service's batched path (issue 20): INFER_BATCH messages of the
core's max_batch, packed in numpy, one record per image whatever fails.

The core is the reference core (hls.refcore) behind a backend that counts the
messages and can fail or corrupt one of them; the results are compared with
the integer model bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

from contract import blob
from contract.intmodel import random_model
from contract.preprocess import CATEGORY_CODES
from contract.spec import CNNSpec
from hls.refcore import RefCore
from protocol import batch as WB
from protocol import pixels as PX
from protocol import results as R
from protocol import stream as S
from protocol import wire as W
from zybo_z7.backends import Accelerator
from zybo_z7.service import Board


@pytest.fixture(scope="module")
def model():
    return random_model(CNNSpec.uniform(4, 4), 5)


class Counting:
    """The reference core as a backend: counts messages by opcode, notes each
    INFER_BATCH's packing, and can raise on (``fail``) or put a die state of
    3 into (``corrupt``) the INFER_BATCH message of a given index."""

    name = "counting"

    def __init__(self, model, max_batch=4, batch=True, max_request_bytes=None):
        self.core = RefCore(model.spec)
        self.core.max_batch = max_batch
        self.batch = batch
        self.ops, self.packings, self.fail, self.corrupt = [], [], {}, {}
        if max_request_bytes:
            self.max_request_bytes = max_request_bytes

    def transact(self, words):
        words = np.array(words, dtype=np.uint32)
        op = int(words[0]) & 0xFF
        self.ops.append(op)
        if op == S.OP_INFER_BATCH:
            k = len(self.packings)
            self.packings.append(int(words[3]) >> 16)
            if k in self.fail:
                raise self.fail[k]
            if k in self.corrupt:    # image i's first pixel becomes state 3
                per = S.image_words(1764, S.PACK_DIE2)
                words[4 + self.corrupt[k] * per] |= 3
                words[-1] = S.checksum(words[:-1])
        reply = self.core.handle(words)
        if op == S.OP_QUERY and not self.batch:   # a core built before INFER_BATCH
            msg = S.decode(reply)
            p = msg.payload.copy()
            p[S.QUERY_FIELDS.index("capabilities")] &= ~S.CAP_BATCH & S.MASK32
            p[S.QUERY_FIELDS.index("max_batch")] = 0
            reply = S.encode(msg.opcode, p, msg.tag)
        return reply

    def close(self):
        pass

    def count(self, op):
        return self.ops.count(op)


def board(model, load=True, **kw):
    be = Counting(model, **kw)
    b = Board(Accelerator(be))
    if load:
        b.load_weights(blob.pack(model).astype("<u4").tobytes())
    return b, be


def maps(n, seed=0):
    return CATEGORY_CODES[np.random.default_rng(seed).integers(0, 3, (n, 42, 42, 1))]


def check_exact(model, res, images, rows):
    cls, logits = model.classify(images[rows])
    assert (res.status[rows] == W.OK).all()
    assert np.array_equal(res.classes[rows], cls)
    assert np.array_equal(res.logits[rows], logits)


@pytest.mark.parametrize("n", [1, 4, 11])
def test_a_batch_is_max_batch_messages_of_die_states_bit_exact(model, n):
    b, be = board(model, max_batch=4)
    x = maps(n, n)
    res, checksum = b.infer_batch(np.arange(100, 100 + n), x)
    assert checksum == S.checksum(blob.pack(model))
    assert res.ids.tolist() == list(range(100, 100 + n))
    assert be.count(S.OP_INFER_BATCH) == -(-n // 4) and be.count(S.OP_INFER) == 0
    assert set(be.packings) == {S.PACK_DIE2}
    check_exact(model, res, x, slice(None))


def test_one_gray_pixel_sends_the_batch_as_u8(model):
    b, be = board(model, max_batch=4)
    x = maps(6, 1)
    x[5, 0, 0, 0] = 7
    res, _ = b.infer_batch(np.arange(6), x)
    assert be.packings == [S.PACK_U8, S.PACK_U8]
    check_exact(model, res, x, slice(None))


def test_a_failed_message_costs_only_its_images(model):
    b, be = board(model, max_batch=4)
    be.fail[1] = TimeoutError("no reply within 5 s; the device was reset")
    x = maps(10, 2)
    res, _ = b.infer_batch(np.arange(10), x)
    assert len(res) == 10 and be.count(S.OP_INFER_BATCH) == 3
    assert (res.status[4:8] == W.E_INTERNAL).all()
    assert all("internal error" in res[i]["message"] for i in range(4, 8))
    check_exact(model, res, x, np.r_[0:4, 8:10])


def test_a_bad_image_gets_its_own_error_record(model):
    b, be = board(model, max_batch=4)
    be.corrupt[0] = 2
    x = maps(5, 3)
    res, _ = b.infer_batch(np.arange(5), x)
    assert res.status.tolist() == [0, 0, W.E_BAD_REQUEST, 0, 0]
    assert "die state of 3" in res[2]["message"] and res[2]["class_index"] is None
    check_exact(model, res, x, [0, 1, 3, 4])


@pytest.mark.parametrize("batch", [True, False])
def test_die_states_from_the_wire_go_to_the_core_as_they_are(model, batch):
    """PACK_DIE2 words as the host sends them: a batch core gets them
    unchanged, an older core one INFER an image; a die state of 3 is that
    image's BAD_REQUEST record either way."""
    b, be = board(model, max_batch=4, batch=batch)
    x = maps(6, 7)
    states = PX.die_codes_from_pixels(x)
    states[4, 10, 10, 0] = 3
    payload = WB.encode_batch(states, np.arange(6), S.PACK_DIE2)
    assert len(payload) == 12 + 8 * 6 + 6 * 4 * S.image_words(42 * 42, S.PACK_DIE2)
    ids, words, packing, shape = WB.decode_batch_packed(payload)
    assert packing == S.PACK_DIE2 and shape == (42, 42, 1) and words.shape == (6, 111)
    res, _ = b.infer_batch(ids, words, packing, shape)
    if batch:
        assert be.count(S.OP_INFER_BATCH) == 2 and set(be.packings) == {S.PACK_DIE2}
    else:
        assert be.count(S.OP_INFER) == 5
    assert res.status.tolist() == [0, 0, 0, 0, W.E_BAD_REQUEST, 0]
    assert "die state of 3" in res[4]["message"]
    check_exact(model, res, x, [0, 1, 2, 3, 5])


def test_a_core_without_infer_batch_gets_one_infer_an_image(model):
    b, be = board(model, batch=False)
    x = maps(3, 4)
    res, _ = b.infer_batch(np.arange(3), x)
    assert be.count(S.OP_INFER) == 3 and be.count(S.OP_INFER_BATCH) == 0
    check_exact(model, res, x, slice(None))


def test_no_weights_is_a_record_per_image(model):
    b, _ = board(model, load=False, max_batch=4)
    res, checksum = b.infer_batch(np.arange(6), maps(6))
    assert checksum == 0 and (res.status == W.E_NO_WEIGHTS).all() and len(res) == 6
    assert all("LOAD_WEIGHTS" in r["message"] for r in res)


@pytest.mark.parametrize("packed,per", [(True, 5), (False, 1)])
def test_a_backend_request_limit_cuts_the_messages(model, packed, per):
    """Five PACK_DIE2 images (111 words each) a message, or one PACK_U8 image (441)."""
    frame = 4 * (S.HEADER_WORDS + S.TRAILER_WORDS + 1)
    b, be = board(model, max_batch=64, max_request_bytes=frame + 5 * 111 * 4 + 3)
    x = maps(7, 6)
    if not packed:
        x[0, 0, 0, 0] = 1
    res, _ = b.infer_batch(np.arange(7), x)
    assert be.count(S.OP_INFER_BATCH) == -(-7 // per)
    check_exact(model, res, x, slice(None))


def test_wrong_shape_is_a_record_per_image_and_no_message(model):
    b, be = board(model)
    res, _ = b.infer_batch(np.arange(2), np.zeros((2, 8, 8, 1), np.uint8))
    assert (res.status == W.E_BAD_SHAPE).all() and be.count(S.OP_INFER_BATCH) == 0


# --- the RESULTS codec as arrays ---------------------------------------------------------------

def _batch(n, k, errors=()):
    rng = np.random.default_rng(n)
    res = R.ResultBatch.empty(rng.integers(0, 2**63, n, dtype=np.uint64), k)
    res.classes[:] = rng.integers(0, k, n)
    res.logits[:] = rng.integers(-2**31, 2**31, (n, k))
    for i in errors:
        res.fail(i, W.E_ACCELERATOR, f"image {i} refused")
    res.weights_checksum = 0xC0FFEE
    return res


@pytest.mark.parametrize("errors", [(), (0,), (3,), (7,), (0, 2, 7)])
def test_results_roundtrip_with_error_records_anywhere(errors):
    res = _batch(8, 9, errors)
    payload = R.encode(res)
    back = R.decode(payload)
    assert np.array_equal(back.ids, res.ids) and np.array_equal(back.status, res.status)
    assert np.array_equal(back.classes, res.classes) and np.array_equal(back.logits, res.logits)
    assert back.messages == res.messages and back.weights_checksum == 0xC0FFEE
    # the records as dicts encode the same bytes
    assert R.encode(list(back), 0xC0FFEE) == payload


def test_results_payload_is_the_documented_layout():
    res = _batch(2, 3, errors=(1,))
    payload = R.encode(res)
    want = (W.RESULTS_HEAD.pack(2, 0xC0FFEE)
            + W.RECORD_HEAD.pack(int(res.ids[0]), 0, int(res.classes[0]), 3)
            + res.logits[0].astype("<i4").tobytes()
            + W.RECORD_HEAD.pack(int(res.ids[1]), W.E_ACCELERATOR, W.NO_CLASS, 15)
            + b"image 1 refused")
    assert payload == want


@pytest.mark.parametrize("cut", [1, 9, 30])
def test_truncated_results_are_a_wire_error(cut):
    payload = R.encode(_batch(4, 9, errors=(2,)))
    with pytest.raises(W.WireError, match="RESULTS"):
        R.decode(payload[:-cut])
