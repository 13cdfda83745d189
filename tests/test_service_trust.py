"""What a host may believe of a board, and a board of a host (issue 21,
items 2, 4, 6; issue 18 items 16 and 17): the weights a batch ran with, no
silent keyless mode, sealed ERRORs, printable peer texts, failed
authentications in the board's log."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from host_stm32mp1.client import BoardClient, BoardError
from protocol import auth as A
from protocol import wire as W
from contract.intmodel import random_model
from contract.spec import CNNSpec
from wq_service_helpers import PY, ROOT, env, run_host
from zybo_z7.backends import Accelerator, load_spec, make_backend
from zybo_z7.service import Board, Service, _classes

KEY = bytes.fromhex("6b" * 32)
RING = A.Keyring({1: KEY}, 1)
GUARD = 60.0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("trust")
    random_model(CNNSpec.uniform(4, 4), seed=3).save(d / "m1")
    random_model(CNNSpec.uniform(4, 4), seed=4).save(d / "m2")   # same topology, other weights
    return d


@pytest.fixture()
def keyed(models):
    board = Board(Accelerator(make_backend("reference", str(models / "m1"))),
                  _classes(models / "m1"), load_spec(models / "m1").layers())
    srv = Service(("127.0.0.1", 0), board, RING)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_weights_swapped_between_batches_is_caught(models, keyed):
    """Another key holder loads other weights between two batches: the next
    RESULTS says which weights ran, and the host refuses the batch. Before,
    the run finished and the DB recorded the checksum the host intended."""
    port = keyed.server_address[1]
    images = np.random.default_rng(0).integers(0, 3, (4, 42, 42, 1)).astype(np.uint8)
    with BoardClient("127.0.0.1", port, timeout=GUARD, key=RING) as a, \
            BoardClient("127.0.0.1", port, timeout=GUARD, key=RING) as b:
        info, _ = a.ensure_weights(models / "m1")
        first = a.infer_batch(images, [1, 2, 3, 4])
        assert {r["weights_checksum"] for r in first} == {info["weights_checksum"]}
        b.ensure_weights(models / "m2")
        with pytest.raises(BoardError, match="another host loaded other weights") as e:
            a.infer_batch(images, [5, 6, 7, 8])
        assert e.value.code == W.E_BAD_WEIGHTS and not e.value.retryable


class SwapProxy:
    """An on-path attacker without the key: passes everything, but replaces
    the board's RESULTS with an unsigned ERROR carrying terminal escapes."""

    EVIL = "\x1b[2J\x1b[31mboard on fire\x07\r\nrm -rf"

    def __init__(self, target):
        self.target = target
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            host, _ = self.lsock.accept()
            threading.Thread(target=self._relay, args=(host,), daemon=True).start()

    def _relay(self, host):
        board = socket.create_connection(self.target)
        threading.Thread(target=self._pipe, args=(host, board), daemon=True).start()
        try:
            while True:
                f = W.read_frame(board, limits={t: (0, W.MAX_PAYLOAD) for t in W.FRAME_TYPES.values()})
                if f.type == W.T_RESULTS:
                    host.sendall(W.encode_frame(W.T_ERROR, W.encode_error(W.E_INTERNAL, self.EVIL),
                                                f.request_id))
                else:
                    host.sendall(f.header + f.payload + (f.auth or b""))
        except (W.WireError, OSError):
            host.close()

    @staticmethod
    def _pipe(src, dst):
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass


def test_unsigned_error_inside_a_session_is_refused(models, keyed):
    proxy = SwapProxy(keyed.server_address)
    with BoardClient("127.0.0.1", proxy.port, timeout=GUARD, key=RING) as c:
        c.ensure_weights(models / "m1")
        with pytest.raises(BoardError) as e:
            c.infer_batch(np.zeros((2, 42, 42, 1), np.uint8), [1, 2])
    assert e.value.code == W.E_AUTH and "failed authentication" in str(e.value)
    assert "\x1b" not in str(e.value) and "board on fire" not in str(e.value)


def test_peer_text_never_reaches_terminal_or_csv_raw(models, tmp_path):
    """--insecure, so the forged ERROR is taken: its escapes still reach
    neither stderr nor the CSV. (Before: ANSI escapes in both.)"""
    board = Board(Accelerator(make_backend("reference", str(models / "m1"))), _classes(models / "m1"))
    srv = Service(("127.0.0.1", 0), board, None)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        proxy = SwapProxy(srv.server_address)
        np.save(tmp_path / "m.npy", np.ones((3, 20, 20), np.uint8))
        proc = run_host(["classify", str(tmp_path / "m.npy"), "--board", f"127.0.0.1:{proxy.port}",
                         "--model", str(models / "m1"), "--csv", str(tmp_path / "r.csv"),
                         "--no-progress", "--insecure"])
    finally:
        srv.shutdown()
        srv.server_close()
    assert proc.returncode == 2, proc.stderr
    assert "board on fire" in proc.stderr and "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    csv = (tmp_path / "r.csv").read_text()
    assert "board on fire" in csv and "\x1b" not in csv


def test_board_errors_are_sealed_and_printable(models, keyed):
    """A genuine ERROR inside a session verifies; its text is printable."""
    with BoardClient("127.0.0.1", keyed.server_address[1], timeout=GUARD, key=RING) as c:
        c.ensure_weights(models / "m1")
        with pytest.raises(BoardError, match="BAD_WEIGHTS: weight blob of 8 bytes") as e:
            c.load_weights(bytes(8))
        assert e.value.code == W.E_BAD_WEIGHTS
        assert c.session.received >= 3     # the ERROR carried a valid MAC


def test_wrong_key_host_is_logged_as_a_failure(models, keyed, caplog):
    """A host with another key cannot verify the SESSION_ACK and drops: the
    board logs an authentication failure, never "authenticated session"."""
    caplog.set_level(logging.INFO, logger="waferq.service")
    wrong = A.Keyring({1: bytes.fromhex("77" * 32)}, 1)
    with BoardClient("127.0.0.1", keyed.server_address[1], timeout=GUARD, key=wrong) as c:
        with pytest.raises(BoardError, match="failed authentication"):
            c.query()
    end = time.monotonic() + GUARD       # the handler sees the close on its own thread
    while keyed.auth_failures == 0 and time.monotonic() < end:
        time.sleep(0.02)
    assert keyed.auth_failures == 1
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(lvl == logging.ERROR and "without one authenticated frame: wrong key?" in m
               for lvl, m in msgs), msgs
    assert not any("authenticated session" in m for _, m in msgs)


def _bare_env():
    e = env(insecure=False)
    for k in ("WQ_KEY", "WQ_KEY_FILE"):
        e.pop(k, None)
    return e


def test_no_key_needs_insecure_on_both_sides(models, tmp_path):
    """Without a key neither side carries on silently: the service and the
    host exit 2 with one sentence unless told --insecure; an --insecure
    service listens on loopback; status says there is no authentication."""
    proc = subprocess.run([PY, "-m", "zybo_z7.service", "--model", str(models / "m1"),
                           "--backend", "reference", "--port", "0"], cwd=ROOT, env=_bare_env(),
                          capture_output=True, text=True, timeout=GUARD)
    assert proc.returncode == 2 and "--insecure" in proc.stderr, proc.stderr
    host = subprocess.run([PY, "-m", "host_stm32mp1", "status", "--board", "127.0.0.1:1"],
                          cwd=ROOT, env=_bare_env(), capture_output=True, text=True, timeout=GUARD)
    assert host.returncode == 2 and host.stderr.startswith("error: no key"), host.stderr
    assert "Traceback" not in host.stderr
    port_file = tmp_path / "port"
    log = tmp_path / "svc.log"
    svc = subprocess.Popen([PY, "-m", "zybo_z7.service", "--model", str(models / "m1"), "--backend",
                            "reference", "--port", "0", "--port-file", str(port_file), "--insecure"],
                           cwd=ROOT, env=_bare_env(), stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + GUARD
        while not port_file.exists() and svc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert f"listening on 127.0.0.1:{port}" in log.read_text()
        out = subprocess.run([PY, "-m", "host_stm32mp1", "status", "--board", f"127.0.0.1:{port}",
                              "--insecure"], cwd=ROOT, env=_bare_env(), capture_output=True,
                             text=True, timeout=GUARD)
        assert out.returncode == 0, out.stderr
        assert "authentication NONE (--insecure)" in out.stdout
        assert "NOT authenticated" in out.stderr
    finally:
        svc.terminate()
        svc.wait(GUARD)


def test_keyed_service_listens_on_all_addresses(models, tmp_path):
    key = tmp_path / "key"
    key.write_text(f"1:{KEY.hex()}\n")
    key.chmod(0o600)
    # Without --listen a keyed service binds every address (a board on the line network).
    port_file = tmp_path / "p2"
    svc = subprocess.Popen([PY, "-m", "zybo_z7.service", "--model", str(models / "m1"), "--backend",
                            "reference", "--port", "0", "--port-file", str(port_file), "--key-file",
                            str(key)], cwd=ROOT, env=_bare_env(), stdout=open(tmp_path / "l2", "wb"),
                           stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + GUARD
        while not port_file.exists() and svc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        assert "listening on 0.0.0.0:" in (tmp_path / "l2").read_text()
    finally:
        svc.terminate()
        svc.wait(GUARD)


def test_store_records_the_checksum_the_board_ran(models, tmp_path):
    """The result rows carry the weights checksum from RESULTS (what the
    board says it ran), equal here to the model's."""
    import sqlite3

    board = Board(Accelerator(make_backend("reference", str(models / "m1"))), _classes(models / "m1"))
    srv = Service(("127.0.0.1", 0), board, None)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        np.save(tmp_path / "m.npy", np.ones((3, 20, 20), np.uint8))
        db = tmp_path / "r.sqlite"
        proc = run_host(["classify", str(tmp_path / "m.npy"), "--board",
                         f"127.0.0.1:{srv.server_address[1]}", "--model", str(models / "m1"),
                         "--db", str(db), "--no-progress", "--insecure"])
        assert proc.returncode == 0, proc.stderr
        ran = board.accel.query()["weights_checksum"]
    finally:
        srv.shutdown()
        srv.server_close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT weights_checksum FROM wq_results").fetchall()
    assert rows and {r[0] for r in rows} == {ran}
