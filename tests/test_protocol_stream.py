"""The stream format: the generated C header against protocol.stream, message
round trips, pixel packing and the weight blob's bit packing."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from protocol import codegen
from protocol import pixels as PX
from protocol import stream as S
from protocol import wire as W
from contract import blob
from contract.intmodel import random_model
from contract.spec import CNNSpec


def test_header_text_has_every_constant_and_a_guard():
    text = codegen.header_text()
    assert text.count("#ifndef WQ_STREAM_FORMAT_H") == 1
    for name in S.c_constants():
        assert f"#define {name} " in text


SOURCES = {codegen.HEADER_NAME: S, codegen.WIRE_HEADER_NAME: W}


def _compile_and_print(tmp_path, compiler: str, lang: str, name: str) -> dict[str, int]:
    header = codegen.write_header(tmp_path, name)
    consts = SOURCES[name].c_constants()
    lines = ['#include <stdio.h>', f'#include "{header.name}"',
             f'#include "{header.name}"  /* the guard makes a second include harmless */',
             "int main(void) {"]
    lines += [f'    printf("%s %lu\\n", "{n}", (unsigned long)({n}));' for n in consts]
    lines += ["    return 0;", "}"]
    src = tmp_path / f"print_consts.{lang}"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / f"print_consts_{lang}"
    std = "-std=c99" if lang == "c" else "-std=c++14"
    subprocess.run([compiler, std, "-Wall", "-Werror", "-I", str(tmp_path), str(src), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


@pytest.mark.needs_gxx
@pytest.mark.parametrize("name", list(SOURCES))
@pytest.mark.parametrize("compiler,lang", [("gcc", "c"), ("g++", "cpp")])
def test_generated_header_matches_python(tmp_path, compiler, lang, name):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    assert _compile_and_print(tmp_path, compiler, lang, name) == SOURCES[name].c_constants()


def test_codegen_cli_writes_headers(tmp_path):
    assert codegen.main([str(tmp_path / "out")]) == 0
    for name in SOURCES:
        assert (tmp_path / "out" / name).read_text() == codegen.header_text(name)


@pytest.mark.parametrize("opcode,n", [(S.OP_QUERY, 0), (S.OP_LOAD_WEIGHTS, 5), (S.OP_INFER, 441)])
def test_encode_decode_round_trip(opcode, n):
    payload = np.random.default_rng(n).integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    words = S.encode(opcode, payload, tag=0xDEADBEEF)
    assert words.size == S.HEADER_WORDS + n + S.TRAILER_WORDS
    msg = S.decode(words)
    assert (msg.opcode, msg.tag) == (opcode, 0xDEADBEEF)
    np.testing.assert_array_equal(msg.payload, payload)
    assert S.decode(S.from_bytes(S.to_bytes(words))).tag == 0xDEADBEEF


@pytest.mark.parametrize("corrupt,match", [
    (lambda w: w[:2], "shorter"),
    (lambda w: np.concatenate([[w[0] ^ 0x10000], w[1:]]), "magic"),
    (lambda w: np.concatenate([[w[0] ^ 0x100], w[1:]]), "version"),
    (lambda w: np.concatenate([w[:-1], [0], w[-1:]]), "length"),
    (lambda w: np.concatenate([w[:-1], [w[-1] ^ 1]]), "checksum"),
])
def test_decode_rejects_malformed(corrupt, match):
    words = S.encode(S.OP_LOAD_WEIGHTS, [1, 2, 3], tag=5)
    with pytest.raises(S.StreamError, match=match):
        S.decode(np.asarray(corrupt(words), dtype=np.uint32))


def test_error_reply_raises_with_code():
    msg = S.decode(S.encode(S.OP_ERROR, [S.ERR_NO_WEIGHTS, 0], tag=1))
    with pytest.raises(S.StreamError) as e:
        S.raise_if_error(msg)
    assert e.value.code == S.ERR_NO_WEIGHTS


def test_pack_pixels_order_and_padding():
    img = np.arange(1, 8, dtype=np.uint8).reshape(1, 7, 1)
    words = PX.pack_pixels(img)
    assert words.tolist() == [0x04030201, 0x00070605]   # first pixel in bits [7:0]
    hwc = np.random.default_rng(0).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    packed = PX.pack_pixels(hwc)
    assert packed.size == S.infer_words(hwc.size)
    back = packed.astype("<u4").view(np.uint8)[:hwc.size].reshape(hwc.shape)
    np.testing.assert_array_equal(back, hwc)


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_bits_round_trip(bits):
    rng = np.random.default_rng(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for count in (1, 15, 16, 17, 33, 1000):
        v = rng.integers(lo, hi + 1, count)
        v[:2] = [lo, hi][:count]
        words = blob.pack_bits(v, bits)
        assert words.size == (count * bits + 31) // 32
        np.testing.assert_array_equal(blob.unpack_bits(words, bits, count), v)


def test_pack_bits_is_lsb_first():
    assert blob.pack_bits(np.array([1, -1, 0, 1]), 2).tolist() == [0b01_00_11_01]


@pytest.mark.parametrize("w", range(2, 9))
def test_blob_round_trip(w):
    spec = CNNSpec.uniform(w, 4, in_size=16, channels=(3, 5))
    model = random_model(spec, seed=w)
    words = blob.pack(model)
    assert words.size == blob.blob_words(model.layers)
    back = blob.unpack(model.layers, words)
    for k, v in model.weights.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    with pytest.raises(ValueError):
        blob.unpack(model.layers, words[:-1])


# --- INFER_BATCH: packings, encode and parse ---------------------------------------

def test_die2_packing_order_and_padding():
    states = np.array([1, 2, 3, 0, 2] + [0] * 11 + [2, 1], np.uint8).reshape(1, 1, 18, 1)
    words = PX.pack_die2(states)
    assert words.shape == (1, 2) and words.shape[1] == S.image_words(18, S.PACK_DIE2)
    # first pixel in bits [1:0]: 1 | 2 << 2 | 3 << 4 | 0 << 6 | 2 << 8
    assert words[0].tolist() == [0b10_00_11_10_01, 0b01_10]
    np.testing.assert_array_equal(PX.unpack_die2(words, 18), states.reshape(1, 18))


def test_die2_round_trip_of_a_batch_and_the_42x42_sizes():
    rng = np.random.default_rng(3)
    states = rng.integers(0, 4, (5, 42, 42, 1), dtype=np.uint8)
    words = PX.pack_die2(states)
    assert words.shape == (5, 111) and S.image_words(42 * 42, S.PACK_U8) == 441
    np.testing.assert_array_equal(PX.unpack_die2(words, 42 * 42).reshape(states.shape), states)
    with pytest.raises(ValueError, match="0..3"):
        PX.pack_die2(np.full((1, 4), 4, np.uint8))


def test_die_codes_from_pixels():
    codes = np.array(S.DIE_PIXEL_CODES, np.uint8)
    states = np.random.default_rng(1).integers(0, 3, (3, 7, 7, 1), dtype=np.uint8)
    got = PX.die_codes_from_pixels(codes[states])
    np.testing.assert_array_equal(got, states)
    np.testing.assert_array_equal(PX.pixels_from_die_states(got), codes[states])
    bad = codes[states].copy()
    bad[1, 3, 3, 0] = 127
    assert PX.die_codes_from_pixels(bad) is None


@pytest.mark.parametrize("packing", [S.PACK_U8, S.PACK_DIE2])
def test_encode_infer_batch_layout(packing):
    rng = np.random.default_rng(packing)
    hi = 256 if packing == S.PACK_U8 else 3
    images = rng.integers(0, hi, (3, 5, 5, 1), dtype=np.uint8)
    msg = S.decode(PX.encode_infer_batch(images, packing, tag=77))
    assert (msg.opcode, msg.tag) == (S.OP_INFER_BATCH, 77)
    iw = S.image_words(25, packing)
    assert msg.payload.size == 1 + 3 * iw
    assert int(msg.payload[0]) == 3 | packing << 16 == S.batch_word(3, packing)
    for i in range(3):   # each image on its own word boundary, packed as one alone
        one = msg.payload[1 + i * iw:1 + (i + 1) * iw]
        if packing == S.PACK_U8:
            np.testing.assert_array_equal(one, PX.pack_pixels(images[i]))
        else:
            np.testing.assert_array_equal(PX.unpack_die2(one, 25), images[i].reshape(25))
    with pytest.raises(ValueError, match="packing"):
        PX.encode_infer_batch(images, 7)


def test_parse_batch_reply_records_errors_and_features():
    n, k = 3, 4
    rec = np.zeros((n, S.record_words(k, 2)), np.uint32)
    rec[0, 1:] = [2, 5, (-7) & S.MASK32, 0, 1, 0x04030201, 0x000000FF]
    rec[1, 0] = S.ERR_BAD_PIXEL
    rec[2, 1:] = [0, 9, 8, 7, 6, 0x7F800001, 0]
    msg = S.decode(S.encode(S.OP_INFER_BATCH | S.REPLY_BIT, rec.ravel(), 3))
    status, cls, logits, feat = S.parse_batch_reply(msg, n, k, feature_shape=(1, 5, 1), signed=True)
    assert status.tolist() == [0, S.ERR_BAD_PIXEL, 0] and cls.tolist() == [2, 0, 0]
    assert logits.dtype == np.int32 and logits[0].tolist() == [5, -7, 0, 1]
    assert feat.shape == (3, 1, 5, 1) and feat[0].ravel().tolist() == [1, 2, 3, 4, -1]
    assert feat[2].ravel().tolist() == [1, 0, -128, 127, 0]
    with pytest.raises(S.StreamError, match="INFER_BATCH reply"):
        S.parse_batch_reply(msg, n, k)          # no features: the records are too long
    err = S.decode(S.encode(S.OP_ERROR, [S.ERR_BAD_BATCH, 0], 3))
    with pytest.raises(S.StreamError) as e:
        S.parse_batch_reply(err, n, k)
    assert e.value.code == S.ERR_BAD_BATCH


def test_preprocess_codes_are_the_protocols():
    from contract.preprocess import CATEGORY_CODES

    assert tuple(CATEGORY_CODES.tolist()) == S.DIE_PIXEL_CODES
