"""Fuzz the frame parser: 100,000 seeded mutations of valid frames in-process
(parser, HMAC check, payload decoders), then 2,000 of them against a live
keyed service over loopback. No crash, no hang, every bad frame answered with
an ERROR (the same code the parser gives in-process) or a clean close.

A seeded generator (no extra dependency), so a failure names the seed and the
index that reproduces it."""
import io
import os
import random
import socket
import struct
import time
import zlib

import numpy as np
import pytest

from host_stm32mp1.client import BoardClient
from protocol import auth as A
from protocol import batch as WB
from protocol import results as R
from protocol import wire as W
from contract.intmodel import random_model
from contract.spec import CNNSpec
from wq_service_helpers import service

SEED = 20261123
N_INPROC = 100_000
N_LIVE = 2_000
KEY = bytes(range(32))
SESSION_ID = b"\xa5" * 32


def valid_frames(rng: random.Random):
    """A pool of well-formed frames of every kind, plain and sealed."""
    sess = A.Session(KEY, 1, SESSION_ID, b"C")
    out = [W.encode_frame(W.T_HELLO, b"", 1),
           W.encode_frame(W.T_LOAD_WEIGHTS, bytes(rng.randrange(256) for _ in range(64)), 2),
           W.encode_frame(W.T_SESSION, A.session_request(1)[1], 3),
           W.encode_frame(W.T_ERROR, W.encode_error(3, "x"), 4),
           W.encode_frame(W.T_INFO, W.encode_info({"backend": "b", "classes": ["a"]}), 5),
           W.encode_frame(W.T_RESULTS, R.encode(
               [dict(id=1, status=0, class_index=1, logits=[1, 2]),
                dict(id=2, status=3, message="m")]), 6)]
    for n, h, w in ((0, 1, 1), (1, 4, 4), (3, 5, 2), (2, 42, 42)):
        imgs = np.frombuffer(bytes(rng.randrange(3) for _ in range(n * h * w)), np.uint8)
        out.append(W.encode_frame(W.T_INFER_BATCH,
                                  WB.encode_batch(imgs.reshape(n, h, w, 1), range(n)), 7))
    out += [sess.seal(W.T_HELLO, b"", 8), sess.seal(W.T_LOAD_WEIGHTS, b"\0" * 16, 9),
            sess.seal(W.T_INFER_BATCH, WB.encode_batch(np.zeros((1, 3, 3, 1), np.uint8), [1]), 10)]
    return out


def _set(buf, fmt, off, value):
    if off + struct.calcsize(fmt) <= len(buf):
        struct.pack_into(fmt, buf, off, value)


def mutate(rng: random.Random, pool) -> bytes:
    buf = bytearray(rng.choice(pool))
    for _ in range(rng.randint(1, 3)):
        m = rng.randrange(12)
        if m == 0 and buf:                       # bit flips anywhere
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
        elif m == 1:                             # truncation
            del buf[rng.randrange(len(buf) + 1):]
        elif m == 2:                             # payload_len lies, small or huge
            _set(buf, "<I", 12, rng.choice([0, 1, len(buf), len(buf) + rng.randrange(1, 100),
                                            W.MAX_PAYLOAD, W.MAX_PAYLOAD + 1, 0xFFFFFFFF,
                                            rng.getrandbits(32)]))
        elif m == 3:                             # random type
            _set(buf, "<B", 5, rng.randrange(256))
        elif m == 4:                             # bad crc
            _set(buf, "<I", 16, rng.getrandbits(32))
        elif m == 5:                             # random flags
            _set(buf, "<H", 6, rng.choice([W.F_AUTH, rng.getrandbits(16)]))
        elif m == 6:                             # auth garbage: flag on, random trailer
            _set(buf, "<H", 6, W.F_AUTH)
            buf += os.urandom(rng.choice([0, 10, W.AUTH_TRAILER_SIZE]))
        elif m == 7:                             # payload edited, crc fixed: reach decoders
            if len(buf) > W.HEADER_SIZE:
                i = rng.randrange(W.HEADER_SIZE, len(buf))
                buf[i] = rng.randrange(256)
                n = struct.unpack_from("<I", buf, 12)[0]
                _set(buf, "<I", 16, zlib.crc32(bytes(buf[W.HEADER_SIZE:W.HEADER_SIZE + n])))
        elif m == 8:                             # version / magic
            _set(buf, "<B", 4, rng.randrange(256))
            if rng.random() < 0.3:
                buf[0:4] = os.urandom(4)
        elif m == 9:                             # trailing garbage / a second frame
            buf += rng.choice(pool) if rng.random() < 0.5 else os.urandom(rng.randrange(1, 64))
        elif m == 10:                            # pure noise
            buf = bytearray(os.urandom(rng.randrange(0, 80)))
        else:                                    # valid, untouched
            pass
    return bytes(buf)


PRE_AUTH = {W.T_SESSION: W.FRAME_LIMITS[W.T_SESSION]}   # a keyed service before SESSION


def parse_like_service(data: bytes, limits=None):
    """What the service's reader and checks make of the first frame:
    ('frame', Frame) or ('error', code) or ('closed', None). With PRE_AUTH
    limits, as a keyed service before SESSION: any other header is an E_AUTH."""
    try:
        f = W.read_frame(io.BytesIO(data), limits=limits)
    except W.ConnectionClosed:
        return "closed", None
    except W.FrameRefused:
        return "error", (W.E_AUTH if limits is PRE_AUTH else W.E_BAD_FRAME)
    except W.WireError as e:
        assert e.code in W.STATUS_NAMES
        return "error", e.code
    # Everything a keyed service then does with the bytes of a frame.
    try:
        A.Session(KEY, 1, SESSION_ID, b"S").open(f)
    except A.AuthError:
        pass
    decoders = {W.T_INFER_BATCH: WB.decode_batch, W.T_INFO: W.decode_info,
                W.T_RESULTS: R.decode, W.T_ERROR: W.decode_error}
    if f.type in decoders:
        try:
            decoders[f.type](f.payload)
        except W.WireError as e:
            assert e.code in W.STATUS_NAMES
    if f.type == W.T_SESSION:
        try:
            A.accept_session(A.Keyring({1: KEY}, 1), f.payload)
        except A.AuthError:
            pass
    return "frame", f


def test_parser_100k_mutations_in_process():
    rng = random.Random(SEED)
    pool = valid_frames(rng)
    kinds = {"frame": 0, "error": 0, "closed": 0}
    t0 = time.monotonic()
    for i in range(N_INPROC):
        data = mutate(rng, pool)
        try:
            kind, _ = parse_like_service(data)
        except Exception as e:  # noqa: BLE001 - anything but WireError is a parser bug
            pytest.fail(f"seed {SEED} input {i} ({data[:64].hex()}...): {type(e).__name__}: {e}")
        kinds[kind] += 1
    dt = time.monotonic() - t0
    print(f"\n{N_INPROC} frames in {dt:.1f} s: {kinds}")
    assert sum(kinds.values()) == N_INPROC and kinds["error"] > N_INPROC // 2 and kinds["frame"]
    assert dt < 60


def _exchange(port, data, bound=5.0):
    """Send one fuzzed input, half-close, read replies to EOF: (replies, outcome, seconds)."""
    t0 = time.monotonic()
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=bound) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass   # the service may have answered and closed before we finished sending
        while True:
            try:
                replies.append(W.read_frame(s, timeout=bound, deadline=t0 + bound))
            except W.ConnectionClosed:
                return replies, "closed", time.monotonic() - t0
            except W.WireTimeout:
                return replies, "hang", time.monotonic() - t0


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    random_model(CNNSpec.uniform(4, 4), seed=1).save(d / "model")
    key = d / "key"
    key.write_text(f"1:{KEY.hex()}\n")
    key.chmod(0o600)
    with service(d / "model", d, extra=("--key-file", str(key))) as (port, proc):
        yield port, proc, d


def test_live_service_2000_mutations(keyed_service):
    port, proc, d = keyed_service
    rng = random.Random(SEED + 1)
    pool = valid_frames(rng)
    worst, outcomes = 0.0, {}
    for i in range(N_LIVE):
        data = mutate(rng, pool)
        kind, code = parse_like_service(data, PRE_AUTH)
        replies, outcome, dt = _exchange(port, data)
        worst = max(worst, dt)
        assert outcome == "closed", f"input {i}: no reply and no close within the bound"
        errors = [W.decode_error(f.payload)[0] for f in replies if f.type == W.T_ERROR]
        if kind == "error":       # a malformed frame: ERROR with the parser's code, then close
            assert errors and errors[0] == code, (i, data[:40].hex(), replies)
            assert len(replies) == 1
        elif kind == "closed":    # nothing sent: a clean close, no reply
            assert replies == []
        else:                     # well formed: unauthenticated gets E_AUTH, SESSION an ACK
            f = code
            if f.type != W.T_SESSION:
                assert errors and errors[0] == W.E_AUTH, (i, f.type_name, replies)
            else:
                assert replies and replies[0].type in (W.T_SESSION_ACK, W.T_ERROR)
        key = f"{kind}:{'ERROR' if errors else 'no-error'}"
        outcomes[key] = outcomes.get(key, 0) + 1
    print(f"\n{N_LIVE} live frames, slowest {worst * 1e3:.0f} ms: {outcomes}")
    assert proc.poll() is None, "the service died"
    with BoardClient("127.0.0.1", port, timeout=10, key=A.Keyring({1: KEY}, 1)) as c:
        assert c.query()["backend"] == "reference"   # still serving, after all that
    log = next(d.glob("service-*.log")).read_text(errors="replace")
    assert "Traceback" not in log
