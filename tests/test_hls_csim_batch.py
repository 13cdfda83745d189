"""INFER_BATCH on a small generated core in C simulation: max_batch images with a
bad one among them, a batch cut by a soft reset, `make csim`'s batch check, and
fuzzed batch requests against hls.refcore.RefCore."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import random_model
from contract.spec import CNNSpec

pytestmark = [pytest.mark.needs_gxx,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")]

pytest.importorskip("hls.csim", reason="hls.csim needs numpy and ctypes")
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")

from hls.csim import CSimCore  # noqa: E402
from hls.refcore import RefCore  # noqa: E402
from csim_helpers import batch_images, load_weights  # noqa: E402


@pytest.fixture(scope="module")
def small_core(tmp_path_factory):
    """A 12x12 core: max_batch (1,024) images cost little C-sim time."""
    base = tmp_path_factory.mktemp("small")
    model = random_model(CNNSpec.uniform(4, 4, in_size=12, channels=(2, 3)), seed=3)
    model.save(base / "export")
    core = CSimCore.for_model(base / "export", base / "hls")
    load_weights(core, model)
    return model, core, base


@pytest.mark.parametrize("packing", [S.PACK_U8, S.PACK_DIE2], ids=["u8", "die2"])
def test_infer_batch_max_batch_with_one_bad_image(small_core, packing):
    """max_batch images in one message, bit-exact; with PACK_DIE2 one image in
    the middle holds a die state of 3 and only it gets an error record.
    max_batch + 1 images get one BAD_BATCH reply."""
    model, core, _ = small_core
    m = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 1))))["max_batch"]
    assert m == 1024
    images, pixels = batch_images(model, m + 1, packing, seed=packing)
    bad = m // 2
    if packing == S.PACK_DIE2:
        images[bad].flat[7] = 3
    status, cls, logits = core.infer_batch(images[:m], model.spec.n_classes, packing, tag=2)
    ok = np.ones(m, bool)
    if packing == S.PACK_DIE2:
        ok[bad] = False
        assert status[bad] == S.ERR_BAD_PIXEL and cls[bad] == 0 and not logits[bad].any()
    assert (status[ok] == 0).all()
    np.testing.assert_array_equal(logits[ok], model.forward(pixels[:m][ok]).astype(np.int32))
    with pytest.raises(S.StreamError) as e:
        core.infer_batch(images, model.spec.n_classes, packing, tag=3)
    assert (e.value.code, e.value.detail) == (S.ERR_BAD_BATCH, m + 1)


def test_cut_batch_then_soft_reset(small_core):
    """A batch cut mid-image by an abort leaves nothing behind after the soft
    reset: the next batch gets exactly its own records."""
    model, core, _ = small_core
    images, pixels = batch_images(model, 8, S.PACK_DIE2, seed=4)
    req = PX.encode_infer_batch(images, S.PACK_DIE2, 5)
    core.cut(req[:req.size // 2])
    core.soft_reset(reset_state=False)
    status, _, logits = core.infer_batch(images[:3], model.spec.n_classes, S.PACK_DIE2, tag=6)
    assert (status == 0).all()
    np.testing.assert_array_equal(logits, model.forward(pixels[:3]).astype(np.int32))


def test_make_csim_check_covers_batches(small_core, capsys):
    """hls.check (make csim) runs batches of 1, 16, 64 and max_batch in both
    packings and a DIE2 batch with one bad image, and fails on a difference."""
    from hls import check

    model, core, base = small_core
    assert check.compare_batches(base / "export", base / "hls", core=core) == []
    out = capsys.readouterr().out
    for line in ("U8 n=1:", "U8 n=1024:", "DIE2 n=64:", "DIE2 n=1024, one bad image:"):
        assert f"INFER_BATCH {line} bit-exact" in out
    # a core whose batch replies differ in one logit bit of the last record
    class Flipped:
        transact = core.transact

        def infer_batch(self, *args, **kwargs):
            status, cls, logits = core.infer_batch(*args, **kwargs)
            logits[-1, 0] ^= 1
            return status, cls, logits
    failed = check.compare_batches(base / "export", base / "hls", core=Flipped())
    assert len(failed) == 11 and "INFER_BATCH DIE2 n=1024, one bad image" in failed


def _mutate(rng: np.random.Generator, words: np.ndarray, iw: int) -> np.ndarray:
    """One random change to an INFER_BATCH request, its checksum then fixed or not."""
    w = words.copy()
    kind = rng.integers(6)
    if kind == 0:    # a flipped bit anywhere, the header included
        i = rng.integers(w.size)
        w[i] ^= np.uint32(1 << int(rng.integers(32)))
    elif kind == 1:  # cut short, TLAST on the new last word
        w = w[:rng.integers(1, w.size)]
    elif kind == 2:  # a word too many somewhere in the payload
        i = rng.integers(S.HEADER_WORDS, w.size)
        w = np.insert(w, i, np.uint32(rng.integers(1 << 32)))
    elif kind == 3:  # word 0: another n or packing
        w[S.HEADER_WORDS] = S.batch_word(int(rng.integers(0, 8)), int(rng.integers(0, 4)))
    elif kind == 4:  # a die state of 3 somewhere (a bad pixel, or padding)
        i = S.HEADER_WORDS + 1 + rng.integers(w.size - S.HEADER_WORDS - 2)
        w[i] |= np.uint32(3 << (2 * int(rng.integers(16))))
    else:            # the length field
        w[1] = np.uint32(int(w[1]) + int(rng.integers(-2, 3)))
    if rng.integers(4) and w.size > S.HEADER_WORDS:
        w[-1] = S.checksum(w[:-1])
    return w


def test_fuzzed_batches_match_refcore(small_core):
    """Random INFER_BATCH requests, each changed once at random: the C-sim's
    reply equals RefCore's word for word, and the core keeps answering."""
    model, core, _ = small_core
    ref = RefCore(model.spec)
    ref.handle(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 1))
    rng = np.random.default_rng(2026)
    iw = S.image_words(int(np.prod(model.input_shape)), S.PACK_DIE2)
    kinds = set()
    for case in range(120):
        packing = int(rng.integers(2))
        images, _ = batch_images(model, int(rng.integers(1, 5)), packing, seed=case)
        req = _mutate(rng, PX.encode_infer_batch(images, packing, tag=case), iw)
        got, want = core.transact(req), ref.handle(req)
        np.testing.assert_array_equal(got, want, err_msg=f"case {case}: {req[:5]}...")
        kinds.add(int(want[0]) & 0xFF)
    assert {S.OP_ERROR, S.OP_INFER_BATCH | S.REPLY_BIT} <= kinds
