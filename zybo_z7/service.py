"""Board-side TCP service: speaks ``protocol.wire`` to hosts, ``protocol.stream``
to the accelerator.

    python -m zybo_z7.service --model build/X/export [--backend csim] \
        [--host 0.0.0.0] [--port 5150] [--port-file PATH] [--key-file PATH]

One thread per client; the accelerator is a single device, so every exchange
with it holds one lock (a batch is never interleaved with another client's
LOAD_WEIGHTS). Every image of an INFER_BATCH gets exactly one result record.
A malformed frame gets an ERROR frame and the connection is closed, since the
byte stream can no longer be trusted to be at a frame boundary.

With a key (``--key-file``, mode 0600, or $WQ_KEY_FILE / $WQ_KEY) every
connection must open with SESSION and every later frame must carry a valid,
fresh HMAC (``protocol.auth``); anything else is logged at ERROR, answered
with ERROR E_AUTH and the connection closed. Without a key the service
accepts unauthenticated frames as before: for a bench, never for production.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

import numpy as np

from protocol import auth as A
from protocol import stream as S
from protocol import wire as W
from zybo_z7.backends import Accelerator, make_backend

log = logging.getLogger("waferq.service")

READ_TIMEOUT = 300.0  # an idle host may keep its connection between runs


class Board:
    """The accelerator plus what the service knows about it."""

    def __init__(self, accel: Accelerator, classes=()):
        self.accel = accel
        self.classes = tuple(classes)
        self.lock = threading.Lock()
        self.weight_loads = 0
        self.info = accel.query()

    def hello(self) -> dict:
        with self.lock:
            info = self.accel.query()
        self.info = info
        return dict(info, backend=self.accel.name, classes=self.classes,
                    weight_loads=self.weight_loads)

    def load_weights(self, data: bytes) -> int:
        if len(data) % 4:
            raise W.WireError(f"weight blob of {len(data)} bytes is not whole 32-bit words",
                              W.E_BAD_WEIGHTS)
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        with self.lock:
            try:
                checksum = self.accel.load_weights(words)
            except S.StreamError as e:
                raise W.WireError(f"accelerator rejected the weights: {e}", W.E_BAD_WEIGHTS) from e
            self.weight_loads += 1
        log.info("loaded weights: %d words, checksum 0x%08x", words.size, checksum)
        return checksum

    def infer_batch(self, ids: np.ndarray, images: np.ndarray) -> list[dict]:
        shape = (self.info["in_height"], self.info["in_width"], self.info["in_channels"])
        if images.shape[1:] != shape:
            msg = (f"image is {'x'.join(map(str, images.shape[1:]))}, the model takes "
                   f"{'x'.join(map(str, shape))}")
            return [dict(id=int(i), status=W.E_BAD_SHAPE, message=msg) for i in ids]
        records = []
        with self.lock:
            for image_id, image in zip(ids, images):
                records.append(self._infer_one(int(image_id), image))
        return records

    def _infer_one(self, image_id: int, image: np.ndarray) -> dict:
        try:
            cls, logits = self.accel.infer(image)
            return dict(id=image_id, status=W.OK, class_index=cls, logits=logits)
        except S.StreamError as e:
            code = W.E_NO_WEIGHTS if e.code == S.ERR_NO_WEIGHTS else W.E_ACCELERATOR
            if code == W.E_NO_WEIGHTS:
                return dict(id=image_id, status=code, message="no weights loaded: send LOAD_WEIGHTS first")
            return dict(id=image_id, status=code, message=str(e))
        except Exception as e:  # a backend fault must still yield this image's record
            log.exception("backend failed on image %d", image_id)
            return dict(id=image_id, status=W.E_INTERNAL, message=f"{type(e).__name__}: {e}")


class Handler(socketserver.BaseRequestHandler):
    server: "Service"
    session: "A.Session | None" = None

    def handle(self) -> None:
        sock, peer = self.request, "%s:%d" % self.client_address[:2]
        log.info("%s connected", peer)
        board = self.server.board
        self.session = None
        while not self.server.stopping.is_set():
            try:
                frame = W.read_frame(sock, timeout=READ_TIMEOUT)
            except W.ConnectionClosed:
                break
            except W.WireTimeout:
                log.info("%s idle for %.0f s, closing", peer, READ_TIMEOUT)
                break
            except W.WireError as e:
                log.warning("%s sent a malformed frame: %s", peer, e)
                self._send_error(sock, 0, e.code, str(e))
                self._linger(sock)
                break
            try:
                if not self._authenticate(sock, peer, frame):
                    continue
            except A.AuthError as e:
                self.server.auth_failures += 1
                log.error("%s refused (authentication): %s", peer, e)
                self._send_error(sock, frame.request_id, W.E_AUTH, str(e))
                self._linger(sock)
                break
            except OSError as e:
                log.info("%s connection error: %s", peer, e)
                break
            except OSError as e:
                log.info("%s connection error: %s", peer, e)
                break
            if not self._dispatch(sock, peer, board, frame):
                break
        log.info("%s disconnected", peer)

    def _authenticate(self, sock, peer, frame: W.Frame) -> bool:
        """True: dispatch the frame; False: it was the SESSION handshake (answered).
        Raises AuthError for anything unauthenticated, forged or replayed."""
        ring = self.server.keyring
        if ring is None:
            if frame.type == W.T_SESSION or frame.auth is not None:
                raise A.AuthError("this service has no key configured: start it with "
                                  "--key-file, or run the host without a key")
            return True
        if frame.type == W.T_SESSION:
            if self.session is not None:
                raise A.AuthError("SESSION sent twice on one connection")
            self.session, nonce = A.accept_session(ring, frame.payload)
            log.info("%s authenticated session, key id %d", peer, self.session.key_id)
            sock.sendall(self.session.seal(W.T_SESSION_ACK, nonce, frame.request_id))
            return False
        if self.session is None:
            raise A.AuthError(f"unauthenticated {frame.type_name}: this service requires "
                              "HMAC authentication (open the connection with SESSION)")
        self.session.open(frame)
        return True

    def _dispatch(self, sock, peer, board: Board, frame: W.Frame) -> bool:
        rid = frame.request_id
        try:
            if frame.type == W.T_HELLO:
                reply = (W.T_INFO, W.encode_info(board.hello()))
            elif frame.type == W.T_LOAD_WEIGHTS:
                reply = (W.T_WEIGHTS_ACK, np.array([board.load_weights(frame.payload)], "<u4").tobytes())
            elif frame.type == W.T_INFER_BATCH:
                ids, images = W.decode_batch(frame.payload)
                records = board.infer_batch(ids, images)
                assert len(records) == len(ids)
                log.debug("%s batch of %d", peer, len(ids))
                reply = (W.T_RESULTS, W.encode_results(records))
            else:
                raise W.WireError(f"frame type {frame.type_name} is not a request", W.E_BAD_REQUEST)
        except W.WireError as e:
            log.warning("%s %s: %s", peer, frame.type_name, e)
            # A weights rejection is a normal reply; a bad payload means a broken client.
            self._send_error(sock, rid, e.code, str(e))
            if e.code == W.E_BAD_WEIGHTS:
                return True
            self._linger(sock)
            return False
        except Exception as e:
            log.exception("%s %s failed", peer, frame.type_name)
            self._send_error(sock, rid, W.E_INTERNAL, f"{type(e).__name__}: {e}")
            return True
        try:
            if self.session is not None:
                sock.sendall(self.session.seal(reply[0], reply[1], rid))
            else:
                W.send_frame(sock, reply[0], reply[1], rid)
        except OSError as e:
            log.info("%s could not send the reply: %s", peer, e)
            return False
        return True

    @staticmethod
    def _linger(sock, limit: int = 1 << 20, seconds: float = 0.5) -> None:
        """Close after an ERROR with a FIN, not a RST: closing with unread input
        resets the connection, and a reset can drop the ERROR before the peer
        reads it. Drains at most ``limit`` bytes for at most ``seconds``."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(seconds)
            deadline, got = time.monotonic() + seconds, 0
            while got < limit and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass

    @staticmethod
    def _send_error(sock, rid: int, code: int, message: str) -> None:
        try:
            W.send_frame(sock, W.T_ERROR, W.encode_error(code, message), rid)
        except OSError:
            pass


class Service(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, board: Board, keyring: "A.Keyring | None" = None):
        self.board = board
        self.keyring = keyring
        self.auth_failures = 0
        self.stopping = threading.Event()
        super().__init__(addr, Handler)


def _classes(model_dir) -> tuple[str, ...]:
    meta = json.loads((Path(model_dir) / "model.json").read_text())
    return tuple(meta["spec"].get("classes", ()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zybo_z7.service",
                                description="waferq board service: TCP front end of the accelerator")
    p.add_argument("--model", required=True, help="export folder with model.json (topology, class names)")
    p.add_argument("--backend", default=None, choices=("chardev", "pynq", "csim", "reference"),
                   help="accelerator backend (default: chardev if /dev/waferq0 exists, else csim)")
    p.add_argument("--device", default="/dev/waferq0", help="device node for --backend chardev")
    p.add_argument("--bitstream", default=None,
                   help="overlay .bit (with its .hwh beside it) for --backend pynq")
    p.add_argument("--work-dir", default=None, help="csim build folder (default: next to --model)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, default=5150, help="TCP port, 0 picks a free one")
    p.add_argument("--port-file", default=None, help="write the chosen port here once listening")
    p.add_argument("--key-file", default=None,
                   help="pre-shared HMAC key(s), mode 0600, lines KEY_ID:HEX (default: "
                        "$WQ_KEY_FILE, then $WQ_KEY; none: unauthenticated, bench use only)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        keyring = A.resolve(args.key_file)
    except (OSError, A.KeyFileError) as e:
        log.error("key: %s", e)
        return 2
    if keyring is None:
        log.warning("no key configured: frames are NOT authenticated (use --key-file in production)")
    try:
        backend = make_backend(args.backend, args.model, device=args.device, work_dir=args.work_dir,
                               bitstream=args.bitstream)
        board = Board(Accelerator(backend), _classes(args.model))
        server = Service((args.host, args.port), board, keyring)
    except (OSError, RuntimeError, ValueError, KeyError, S.StreamError) as e:
        log.error("%s", e)
        return 2
    host, port = server.server_address[:2]
    log.info("listening on %s:%d, backend %s, topology 0x%08x", host, port, board.accel.name,
             board.info["topology_hash"])
    if args.port_file:
        # Rename so a watcher never reads a half-written port number.
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, args.port_file)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    while not stop.wait(0.5):
        pass
    server.stopping.set()
    server.shutdown()
    server.server_close()
    board.accel.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
