"""HMAC authentication of frames (protocol.auth): accepted when good, refused
and logged when missing, forged, replayed or under another key."""
import hmac
import io
import logging
import os
import socket
import threading
import zlib

import numpy as np
import pytest

from host_stm32mp1.client import BoardClient, BoardError
from protocol import auth as A
from protocol import wire as W
from contract.intmodel import random_model
from contract.spec import CNNSpec
from wq_service_helpers import run_host
from zybo_z7.backends import Accelerator, make_backend
from zybo_z7.service import Board, Service, _classes

KEY1, KEY2 = "11" * 32, "22" * 32


def keyfile(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth") / "model"
    random_model(CNNSpec.uniform(4, 4), seed=3).save(d)
    return d


def start(model_dir, ring):
    """The service in this process (threads), so its counters and logs are visible."""
    board = Board(Accelerator(make_backend("reference", str(model_dir))), _classes(model_dir))
    srv = Service(("127.0.0.1", 0), board, ring)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture()
def keyed(model):
    srv = start(model, A.Keyring.parse(f"1:{KEY1}\n2:{KEY2}", "test"))
    yield srv
    srv.shutdown()
    srv.server_close()


def raw_session(port, key_hex=KEY1, key_id=1):
    """A hand-driven authenticated connection: (socket, client session)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    ring = A.Keyring({key_id: bytes.fromhex(key_hex)}, key_id)
    nonce, payload = A.session_request(key_id)
    s.sendall(W.encode_frame(W.T_SESSION, payload, 1))
    ack = W.read_frame(s, timeout=10)
    assert ack.type == W.T_SESSION_ACK, W.decode_error(ack.payload)
    sess = A.Session(ring.keys[key_id], key_id, nonce + ack.payload, b"C")
    return s, sess


@pytest.fixture(autouse=True)
def service_log(caplog):
    caplog.set_level(logging.INFO, logger="waferq.service")
    return caplog


def expect_refusal(s, sentence, log, sess=None):
    """A generic E_AUTH to the peer (sealed when a session holds), the detail
    (``sentence``) only in the board's log, and the connection closed."""
    f = W.read_frame(s, timeout=10)
    assert f.type == W.T_ERROR
    if sess is not None:
        sess.open(f)          # raises unless the ERROR carries the session's MAC
    code, msg = W.decode_error(f.payload)
    assert (code, msg) == (W.E_AUTH, "authentication refused")
    with pytest.raises(W.ConnectionClosed):   # the service closed the connection
        W.read_frame(s, timeout=10)
    refusals = [r.getMessage() for r in log.records if "refused (authentication)" in r.getMessage()]
    assert refusals and sentence in refusals[-1], refusals


def test_key_file_permissions_and_formats(tmp_path):
    with pytest.raises(A.KeyFileError, match="chmod 600"):
        A.Keyring.from_file(keyfile(tmp_path / "k", KEY1, 0o644))
    ring = A.Keyring.from_file(keyfile(tmp_path / "k2", f"# rotation\n1:{KEY1}\n7:{KEY2}\n"))
    assert ring.keys == {1: bytes.fromhex(KEY1), 7: bytes.fromhex(KEY2)} and ring.current == 7
    assert A.Keyring.parse(KEY1, "env").keys == {1: bytes.fromhex(KEY1)}
    with pytest.raises(A.KeyFileError, match="at least 16 bytes"):
        A.Keyring.parse("1:abcd", "env")
    assert A.resolve(env={}) is None
    assert A.resolve(env={"WQ_KEY": f"3:{KEY2}"}).current == 3
    assert A.resolve(env={"WQ_KEY_FILE": str(tmp_path / "k2")}).current == 7


def test_good_hmac_accepted_results_sealed(model, keyed):
    port = keyed.server_address[1]
    with BoardClient("127.0.0.1", port, timeout=10, key=A.Keyring.parse(f"2:{KEY2}", "t")) as c:
        info, sent = c.ensure_weights(model)
        assert sent and info["weight_loads"] == 1
        recs = c.infer_batch(np.zeros((3, 42, 42, 1), np.uint8), [4, 5, 6])
        assert [r["status"] for r in recs] == [W.OK] * 3
        assert c.session.received >= 4   # every reply carried a valid MAC
    assert keyed.auth_failures == 0


def test_cli_with_key_file(model, keyed, tmp_path):
    np.save(tmp_path / "m.npy", np.ones((4, 20, 20), np.uint8))
    key = keyfile(tmp_path / "host.key", f"1:{KEY1}\n")
    proc = run_host(["classify", str(tmp_path / "m.npy"), "--board",
                     f"127.0.0.1:{keyed.server_address[1]}", "--model", str(model),
                     "--key-file", str(key), "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    loose = keyfile(tmp_path / "loose.key", f"1:{KEY1}\n", 0o640)
    proc = run_host(["status", "--board", "127.0.0.1:1", "--key-file", str(loose)])
    assert proc.returncode != 0 and "chmod 600" in proc.stderr


def test_missing_hmac_refused_and_logged(keyed, caplog):
    port = keyed.server_address[1]
    with caplog.at_level(logging.ERROR, logger="waferq.service"):
        with BoardClient("127.0.0.1", port, timeout=10, key=None) as c:
            with pytest.raises(BoardError, match="AUTH: authentication refused$") as e:
                c.query()
        assert e.value.code == W.E_AUTH and not e.value.retryable
        # Inside a session, a frame without its trailer is refused too.
        s, _ = raw_session(port)
        with s:
            s.sendall(W.encode_frame(W.T_HELLO, b"", 2))
            expect_refusal(s, "unauthenticated HELLO", caplog)
    assert keyed.auth_failures == 2
    logged = [r.getMessage() for r in caplog.records if "refused (authentication)" in r.getMessage()]
    assert len(logged) == 2 and "HELLO frame not accepted here before SESSION" in logged[0]


def test_bad_hmac_and_tampered_payload_refused(keyed, service_log):
    port = keyed.server_address[1]
    s, sess = raw_session(port)
    with s:
        frame = bytearray(sess.seal(W.T_HELLO, b"", 2))
        frame[-1] ^= 0x01
        s.sendall(frame)
        expect_refusal(s, "bad HMAC", service_log, sess)
    s, sess = raw_session(port)
    with s:
        good = sess.seal(W.T_LOAD_WEIGHTS, b"\0" * 8, 2)
        payload = b"\1" * 8   # altered in flight, crc fixed up: only the MAC catches it
        head = W.HEADER.pack(W.MAGIC, W.VERSION, W.T_LOAD_WEIGHTS, W.F_AUTH, 2, 8,
                             zlib.crc32(payload))
        s.sendall(head + payload + good[-W.AUTH_TRAILER_SIZE:])
        expect_refusal(s, "bad HMAC", service_log, sess)


def test_replayed_frame_refused(keyed, service_log):
    port = keyed.server_address[1]
    s, sess = raw_session(port)
    with s:
        captured = sess.seal(W.T_HELLO, b"", 2)
        s.sendall(captured)
        assert W.read_frame(s, timeout=10).type == W.T_INFO
        s.sendall(captured)                    # same connection: stale counter
        expect_refusal(s, "replayed", service_log, sess)
    s2, _ = raw_session(port)                  # new connection, new session nonce
    with s2:
        s2.sendall(captured)
        expect_refusal(s2, "bad HMAC", service_log)
    s3 = socket.create_connection(("127.0.0.1", port), timeout=10)
    with s3:                                   # no session at all
        s3.sendall(captured)
        expect_refusal(s3, "HELLO frame not accepted here before SESSION", service_log)


def test_wrong_key_refused(keyed, service_log):
    port = keyed.server_address[1]
    wrong = A.Keyring.parse(f"1:{'33' * 32}", "t")
    with BoardClient("127.0.0.1", port, timeout=10, key=wrong) as c:
        with pytest.raises(BoardError, match="failed authentication") as e:
            c.query()              # the SESSION_ACK does not verify: the host refuses the board
        assert e.value.code == W.E_AUTH
    s, sess = raw_session(port, key_hex="33" * 32)   # and the service refuses the host
    with s:
        s.sendall(sess.seal(W.T_HELLO, b"", 2))
        expect_refusal(s, "bad HMAC", service_log)
    with BoardClient("127.0.0.1", port, timeout=10, key=A.Keyring.parse(f"9:{KEY1}", "t")) as c:
        with pytest.raises(BoardError, match="AUTH: authentication refused$"):
            c.query()     # which key ids the board holds is not the peer's business
    logged = [r.getMessage() for r in service_log.records]
    assert any("unknown key id 9" in m and "[1, 2]" in m for m in logged)
    assert not any("authenticated session" in m for m in logged)


def test_keyless_service_refuses_authenticated_host(model):
    srv = start(model, None)
    try:
        port = srv.server_address[1]
        with BoardClient("127.0.0.1", port, timeout=10, key=A.Keyring.parse(KEY1, "t")) as c:
            with pytest.raises(BoardError, match="AUTH: authentication refused$"):
                c.query()
        with BoardClient("127.0.0.1", port, timeout=10, key=None) as c:
            assert c.query()["backend"] == "reference"    # as before: no key on either side
    finally:
        srv.shutdown()
        srv.server_close()


def test_mac_compare_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(A.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    key = bytes.fromhex(KEY1)
    tx, rx = A.Session(key, 1, b"s" * 32, b"C"), A.Session(key, 1, b"s" * 32, b"S")
    rx.open(W.read_frame(io.BytesIO(tx.seal(W.T_HELLO, b"", 1))))
    assert calls == [1]
    with pytest.raises(A.AuthError, match="bad HMAC"):   # a reply is not a request
        tx.open(W.read_frame(io.BytesIO(tx.seal(W.T_HELLO, b"", 1))))
