import io
import socket
import struct
import threading
import zlib

import numpy as np
import pytest

from protocol import batch as WB
from protocol import pixels as PX
from protocol import results as R
from protocol import wire as W


ANY = {t: (0, W.MAX_PAYLOAD) for t in W.FRAME_TYPES.values()}


def rd(data: bytes, limits=ANY):
    return W.read_frame(io.BytesIO(data), limits=limits)


def test_roundtrip_all_types():
    for t in W.FRAME_TYPES.values():
        payload = bytes(range(256)) * 3
        f = rd(W.encode_frame(t, payload, request_id=0xDEADBEEF))
        assert (f.type, f.request_id, f.payload) == (t, 0xDEADBEEF, payload)
    assert rd(W.encode_frame(W.T_HELLO)).payload == b""


def test_payload_codecs_roundtrip():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 7, 6, 1), dtype=np.uint8)
    ids, back = WB.decode_batch(WB.encode_batch(imgs, [1, 2, 3, 2**63, 5]))
    assert ids.tolist() == [1, 2, 3, 2**63, 5] and np.array_equal(back, imgs)
    recs = [dict(id=7, status=W.OK, class_index=3, logits=[-5, 2**31 - 1, -2**31]),
            dict(id=8, status=W.E_BAD_SHAPE, message="image is 4x4x1, wäfer")]
    out = list(R.decode(R.encode(recs, 0xFEEDF00D)))
    assert out[0] == dict(id=7, status=0, class_index=3, logits=[-5, 2**31 - 1, -2**31],
                          weights_checksum=0xFEEDF00D)
    assert out[1]["status"] == W.E_BAD_SHAPE and out[1]["message"] == "image is 4x4x1, wäfer"
    assert out[1]["weights_checksum"] == 0xFEEDF00D
    info = dict(topology_hash=0xC0FFEE, weights_checksum=5, weights_loaded=1, in_height=42,
                in_width=42, in_channels=1, n_classes=2, backend="reference", classes=["a", "Bé"])
    got = W.decode_info(W.encode_info(info))
    assert all(got[k] == v for k, v in info.items()) and got["weight_loads"] == 0
    assert W.decode_error(W.encode_error(3, "nope")) == (3, "nope")


def test_batch_of_die_states_roundtrip():
    rng = np.random.default_rng(1)
    states = rng.integers(0, 3, (3, 5, 7, 1), dtype=np.uint8)
    payload = WB.encode_batch(states, [4, 5, 6], packing=1)
    ids, words, packing, shape = WB.decode_batch_packed(payload)
    assert packing == 1 and shape == (5, 7, 1) and ids.tolist() == [4, 5, 6]
    assert words.shape == (3, 3)    # 35 states, 16 a word
    ids, pixels = WB.decode_batch(payload)
    assert np.array_equal(pixels, np.array([0, 128, 255], np.uint8)[states])
    with pytest.raises(W.WireError, match="packing 7 unknown"):
        WB.decode_batch(payload[:10] + b"\x07\x00" + payload[12:])
    with pytest.raises(W.WireError, match="needs"):
        WB.decode_batch(payload[:-4])


def test_batch_length_mismatch():
    p = WB.encode_batch(np.zeros((2, 3, 3, 1), np.uint8), [1, 2])
    with pytest.raises(W.WireError, match="needs"):
        WB.decode_batch(p[:-1])


def _header(magic=W.MAGIC, version=W.VERSION, t=W.T_HELLO, length=0, crc=0):
    return W.HEADER.pack(magic, version, t, 0, 1, length, crc)


@pytest.mark.parametrize("data,sentence", [
    (_header(magic=b"HTTP"), "bad magic"),
    (_header(version=9), "bad version"),
    (_header(t=0x42), "unknown frame type"),
    (_header(length=W.MAX_PAYLOAD + 1), "oversize frame"),
    (W.encode_frame(W.T_HELLO, b"abcdef")[:-2], "truncated frame"),
    (W.encode_frame(W.T_HELLO)[:7], "truncated frame"),
    (_header(length=3, crc=zlib.crc32(b"abc") ^ 1) + b"abc", "crc mismatch"),
])
def test_malformed(data, sentence):
    with pytest.raises(W.WireError, match=sentence) as e:
        rd(data)
    assert e.value.code == W.E_BAD_FRAME
    assert not isinstance(e.value, W.ConnectionClosed)


def test_clean_close_between_frames():
    with pytest.raises(W.ConnectionClosed):
        rd(b"")


def test_oversize_rejected_before_payload_read():
    class OnlyHeader(io.RawIOBase):
        def __init__(self):
            self.data, self.reads = _header(length=0xFFFFFFFF), []

        def read(self, n):
            self.reads.append(n)
            assert n <= W.HEADER_SIZE, "read past the header of an oversize frame"
            out, self.data = self.data[:n], self.data[n:]
            return out

    src = OnlyHeader()
    with pytest.raises(W.WireError, match="oversize"):
        W.read_frame(src)
    assert sum(src.reads) == W.HEADER_SIZE
    with pytest.raises(W.WireError, match="MAX_PAYLOAD"):
        W.encode_frame(W.T_HELLO, bytes(W.MAX_PAYLOAD + 1))


def test_frame_limits_refuse_on_the_header():
    """Each type has a length range; the payload of a refused frame is never read."""
    class Counting(io.BytesIO):
        def __init__(self, data):
            super().__init__(data)
            self.got = 0

        def read(self, n=-1):
            out = super().read(n)
            self.got += len(out)
            return out

    for data, limits, sentence in [
        (W.encode_frame(W.T_HELLO, bytes(4096)), None, "HELLO frame of 4096 bytes refused"),
        (W.encode_frame(W.T_SESSION, bytes(W.SESSION_SIZE - 1)), None, "SESSION frame of 19"),
        (W.encode_frame(W.T_HELLO), {W.T_SESSION: (20, 20)}, "HELLO frame not accepted here"),
        (W.encode_frame(W.T_LOAD_WEIGHTS, bytes(W.MAX_BLOB_BYTES + 4)), None, "refused"),
    ]:
        src = Counting(data)
        with pytest.raises(W.FrameRefused, match=sentence):
            W.read_frame(src, limits=limits)
        assert src.got == W.HEADER_SIZE
    assert rd(W.encode_frame(W.T_SESSION, bytes(20)), None).payload == bytes(20)


def test_batch_image_cap_and_printable_texts():
    head = struct.pack("<IHHHH", W.MAX_BATCH_IMAGES + 1, 0, 0, 0, 0)
    # Zero-sized images in any count used to decode (500k of them: 233 MiB).
    with pytest.raises(W.WireError, match="at most 1024") as e:
        WB.decode_batch(head + bytes(8 * (W.MAX_BATCH_IMAGES + 1)))
    assert e.value.code == W.E_BAD_REQUEST
    evil = "\x1b[2J\x1b]0;pwn\x07line\r\nfake" + "x" * 1000
    code, msg = W.decode_error(W.encode_error(3, evil))
    assert msg.startswith("?[2J?]0;pwn?line??fake") and len(msg) <= W.MAX_TEXT
    assert all(c.isprintable() for c in msg)
    rec = R.decode(R.encode([dict(id=1, status=5, message=evil)]))[0]
    assert all(c.isprintable() for c in rec["message"])
    info = W.decode_info(W.encode_info(dict(backend="\x1b[31mred", classes=["a\nb"])))
    assert info["backend"] == "?[31mred" and info["classes"] == ["a?b"]


def test_frame_deadline_bounds_a_trickling_peer():
    """The per-receive timeout restarts with every byte; the frame deadline does not."""
    a, b = socket.socketpair()
    with a, b:
        b.sendall(W.encode_frame(W.T_HELLO)[:5])   # then nothing: a half-sent header
        with pytest.raises(W.WireTimeout, match="header"):
            W.read_frame(a, timeout=60, frame_timeout=0.2)


def test_socket_timeout_and_roundtrip():
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(W.WireTimeout, match="timed out"):
            W.read_frame(a, timeout=0.05)
        big = bytes(3 << 20)
        t = threading.Thread(target=W.send_frame, args=(b, W.T_LOAD_WEIGHTS, big, 9))
        t.start()
        f = W.read_frame(a, timeout=5)
        t.join(5)
        assert f.payload == big and f.request_id == 9


def test_c_constants():
    c = W.c_constants()
    assert c["WQW_MAGIC"] == struct.unpack("<I", b"WQNT")[0]
    assert c["WQW_HEADER_SIZE"] == 20 and c["WQW_T_INFER_BATCH"] == W.T_INFER_BATCH
    assert all(isinstance(v, int) and 0 <= v <= 0xFFFFFFFF for v in c.values())
    assert len(set(c)) == len(c)


@pytest.mark.parametrize("shape", [(42, 42, 1), (5, 7, 1), (4, 4, 1), (1, 1, 1), (3, 3, 2)])
def test_die2_words_from_pixels_is_the_streams_pack_die2(shape):
    from protocol import stream as S

    rng = np.random.default_rng(sum(shape))
    codes = np.array(S.DIE_PIXEL_CODES, np.uint8)[rng.integers(0, 3, (9, *shape))]
    want = PX.pack_die2(PX.die_codes_from_pixels(codes))
    got = PX.die2_words_from_pixels(codes)
    assert got.dtype == np.uint32 and np.array_equal(got, want)
    ids = np.arange(9)
    assert WB.encode_batch_words(got, ids, shape, S.PACK_DIE2) == \
        WB.encode_batch(PX.die_codes_from_pixels(codes), ids, S.PACK_DIE2)
    # any code that is not a die category, at any place, refuses the whole batch
    for bad in sorted(set(range(256)) - set(S.DIE_PIXEL_CODES)):
        x = codes.copy()
        x.reshape(-1)[rng.integers(0, x.size)] = bad
        assert PX.die2_words_from_pixels(x) is None, bad
