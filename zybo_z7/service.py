"""Board-side TCP service: speaks ``protocol.wire`` to hosts, ``protocol.stream``
to the accelerator.

    python -m zybo_z7.service --model build/X/export [--backend csim] \
        [--listen ADDR] [--port 5150] [--port-file PATH] (--key-file PATH | --insecure)

One thread per client; the accelerator is a single device, so every exchange
with it holds one lock (a batch is never interleaved with another client's
LOAD_WEIGHTS). Every image of an INFER_BATCH gets exactly one result record.
A malformed frame gets an ERROR frame and the connection is closed, since the
byte stream can no longer be trusted to be at a frame boundary.

With a key (``--key-file``, mode 0600, or $WQ_KEY_FILE / $WQ_KEY) every
connection must open with SESSION and every later frame must carry a valid,
fresh HMAC (``protocol.auth``); anything else is logged at ERROR, answered
with ERROR E_AUTH and a generic text (the detail stays in this log) and the
connection closed. Without a key the service runs only with --insecure, and
then listens on 127.0.0.1 unless told otherwise: for a bench, never for
production.

Limits (``Limits``): connections in all and per peer are capped in the
accepting thread, so a flood costs no threads; before SESSION only a SESSION
frame of its exact size is read, within a handshake deadline; every frame has
a deadline from its first byte and a length range for its type
(``wire.FRAME_LIMITS``, narrowed to the model's image size).
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol import auth as A
from protocol import stream as S
from protocol import wire as W
from quant import blob
from zybo_z7.backends import Accelerator, load_spec, make_backend

log = logging.getLogger("waferq.service")

REFUSED = "authentication refused"          # the only text a refused peer gets
INTERNAL = "internal error on the board (see its log)"


@dataclass(frozen=True)
class Limits:
    """What one peer can hold of the service (README, Security). The Zybo has
    1 GiB: each connection costs a thread and at most one frame in memory."""
    max_connections: int = 32      # handler threads in all
    max_per_peer: int = 8          # connections from one IP address (a host uses one a board)
    handshake_timeout: float = 10.0  # connect -> SESSION received (keyed service)
    frame_timeout: float = 30.0    # first byte of a frame -> its last byte
    idle_timeout: float = 300.0    # between frames (an idle host keeps its connection)


class Board:
    """The accelerator plus what the service knows about it."""

    def __init__(self, accel: Accelerator, classes=(), layers=None):
        self.accel = accel
        self.classes = tuple(classes)
        self.layers = layers            # for the blob's range checks (quant.blob)
        self.lock = threading.Lock()
        self.weight_loads = 0
        self.info = accel.query()

    @property
    def image_bytes(self) -> int:
        return self.info["in_height"] * self.info["in_width"] * self.info["in_channels"]

    def request_limits(self) -> dict:
        """wire.FRAME_LIMITS narrowed to this model: the requests only, and an
        INFER_BATCH of at most MAX_BATCH_IMAGES of the model's images."""
        batch = 12 + W.MAX_BATCH_IMAGES * (8 + self.image_bytes)
        return {W.T_HELLO: W.FRAME_LIMITS[W.T_HELLO], W.T_SESSION: W.FRAME_LIMITS[W.T_SESSION],
                W.T_LOAD_WEIGHTS: W.FRAME_LIMITS[W.T_LOAD_WEIGHTS],
                W.T_INFER_BATCH: (12, min(batch, W.MAX_PAYLOAD))}

    def hello(self) -> dict:
        with self.lock:
            info = self.accel.query()
        self.info = info
        return dict(info, backend=self.accel.name, classes=self.classes,
                    weight_loads=self.weight_loads)

    def check_blob(self, data: bytes) -> np.ndarray:
        """The blob's length and parameter ranges, before the board is locked."""
        need = int(self.info["blob_words"]) * 4
        if len(data) != need:
            raise W.WireError(f"weight blob of {len(data)} bytes, the core takes {need}",
                              W.E_BAD_WEIGHTS)
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        if self.layers is not None:
            try:
                blob.check_params(self.layers, words)
            except blob.BlobError as e:
                raise W.WireError(str(e), W.E_BAD_WEIGHTS) from e
        return words

    def load_weights(self, data: bytes) -> int:
        words = self.check_blob(data)
        with self.lock:
            try:
                checksum = self.accel.load_weights(words)
            except S.StreamError as e:
                raise W.WireError(f"accelerator rejected the weights: {e}", W.E_BAD_WEIGHTS) from e
            self.weight_loads += 1
        log.info("loaded weights: %d words, checksum 0x%08x", words.size, checksum)
        return checksum

    def infer_batch(self, ids: np.ndarray, images: np.ndarray) -> tuple[list[dict], int]:
        """(one record per image, the weights checksum the batch ran with)."""
        shape = (self.info["in_height"], self.info["in_width"], self.info["in_channels"])
        if images.shape[1:] != shape:   # once per batch: every image has the batch's shape
            msg = (f"image is {'x'.join(map(str, images.shape[1:]))}, the model takes "
                   f"{'x'.join(map(str, shape))}")
            return [dict(id=int(i), status=W.E_BAD_SHAPE, message=msg) for i in ids], 0
        records = []
        with self.lock:
            # Under the lock: no LOAD_WEIGHTS of another client can come between
            # this checksum and the images.
            info = self.accel.query()
            checksum = info["weights_checksum"] if info["weights_loaded"] else 0
            for image_id, image in zip(ids, images):
                records.append(self._infer_one(int(image_id), image))
        return records, checksum

    def _infer_one(self, image_id: int, image: np.ndarray) -> dict:
        try:
            cls, logits = self.accel.infer(image)
            return dict(id=image_id, status=W.OK, class_index=cls, logits=logits)
        except S.StreamError as e:
            code = W.E_NO_WEIGHTS if e.code == S.ERR_NO_WEIGHTS else W.E_ACCELERATOR
            if code == W.E_NO_WEIGHTS:
                return dict(id=image_id, status=code, message="no weights loaded: send LOAD_WEIGHTS first")
            log.error("accelerator error on image %d: %s", image_id, e)
            return dict(id=image_id, status=code, message="the accelerator refused the image")
        except Exception:  # a backend fault must still yield this image's record
            log.exception("backend failed on image %d", image_id)
            return dict(id=image_id, status=W.E_INTERNAL, message=INTERNAL)


class Handler(socketserver.BaseRequestHandler):
    server: "Service"
    session: "A.Session | None" = None

    def handle(self) -> None:
        sock, peer = self.request, "%s:%d" % self.client_address[:2]
        log.info("%s connected", peer)
        srv, board = self.server, self.server.board
        lim, keyed = srv.limits, srv.keyring is not None
        self.session, self.verified = None, False
        handshake_end = time.monotonic() + lim.handshake_timeout
        requests = board.request_limits()
        while not srv.stopping.is_set():
            pre_auth = keyed and self.session is None
            try:
                # Before SESSION only a SESSION of its exact length, within the
                # handshake deadline; after it the model's limits.
                frame = W.read_frame(
                    sock, timeout=lim.handshake_timeout if pre_auth else lim.idle_timeout,
                    deadline=handshake_end if pre_auth else None,
                    frame_timeout=lim.frame_timeout,
                    limits={W.T_SESSION: W.FRAME_LIMITS[W.T_SESSION]} if pre_auth else requests)
            except W.ConnectionClosed:
                break
            except W.WireTimeout as e:
                if pre_auth:
                    self._refuse(sock, peer, 0, f"no SESSION within the handshake time ({e})")
                else:
                    log.info("%s: no complete frame in time (%s), closing", peer, e)
                break
            except W.FrameRefused as e:
                if pre_auth:
                    self._refuse(sock, peer, e.request_id, f"{e} before SESSION")
                    break
                log.warning("%s sent a frame it may not send: %s", peer, e)
                self._send_error(sock, e.request_id, W.E_BAD_FRAME, "frame type or length refused")
                self._linger(sock)
                break
            except W.WireError as e:
                log.warning("%s sent a malformed frame: %s", peer, e)
                self._send_error(sock, 0, e.code, str(e))
                self._linger(sock)
                break
            except OSError as e:
                log.info("%s connection error: %s", peer, e)
                break
            try:
                if not self._authenticate(sock, peer, frame):
                    continue
            except A.AuthError as e:
                self._refuse(sock, peer, frame.request_id, str(e))
                break
            except OSError as e:
                log.info("%s connection error: %s", peer, e)
                break
            if not self._dispatch(sock, peer, board, frame):
                break
        if self.session is not None and not self.verified:
            # The host opened a session and left without one valid frame: the
            # usual sign of a host holding another key (it cannot verify our ACK).
            srv.auth_failures += 1
            log.error("%s refused (authentication): closed the session (key id %d) without "
                      "one authenticated frame: wrong key?", peer, self.session.key_id)
        log.info("%s disconnected", peer)

    def _refuse(self, sock, peer, rid: int, detail: str) -> None:
        """An authentication failure: the detail goes to the log, the peer gets
        E_AUTH and a generic text, and the connection closes."""
        self.server.auth_failures += 1
        log.error("%s refused (authentication): %s", peer, W.printable(detail, 400))
        self._send_error(sock, rid, W.E_AUTH, REFUSED)
        self._linger(sock)
        self.session = None       # counted once

    def _authenticate(self, sock, peer, frame: W.Frame) -> bool:
        """True: dispatch the frame; False: it was the SESSION handshake (answered).
        Raises AuthError for anything unauthenticated, forged or replayed."""
        ring = self.server.keyring
        if ring is None:
            if frame.type == W.T_SESSION or frame.auth is not None:
                raise A.AuthError("authenticated frame, but this service has no key "
                                  "configured (--insecure)")
            return True
        if frame.type == W.T_SESSION:
            if self.session is not None:
                raise A.AuthError("SESSION sent twice on one connection")
            if frame.auth is not None:
                raise A.AuthError("SESSION must not carry an HMAC trailer")
            self.session, nonce = A.accept_session(ring, frame.payload)
            log.info("%s SESSION with key id %d: waiting for its first signed frame", peer,
                     self.session.key_id)
            sock.sendall(self.session.seal(W.T_SESSION_ACK, nonce, frame.request_id))
            return False
        if self.session is None:
            raise A.AuthError(f"unauthenticated {frame.type_name}: this service requires "
                              "HMAC authentication (open the connection with SESSION)")
        self.session.open(frame)
        if not self.verified:
            self.verified = True
            log.info("%s authenticated session, key id %d", peer, self.session.key_id)
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
                records, checksum = board.infer_batch(ids, images)
                assert len(records) == len(ids)
                log.debug("%s batch of %d", peer, len(ids))
                reply = (W.T_RESULTS, W.encode_results(records, checksum))
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
        except Exception:
            log.exception("%s %s failed", peer, frame.type_name)
            self._send_error(sock, rid, W.E_INTERNAL, INTERNAL)
            return True
        try:
            data = (self.session.seal(reply[0], reply[1], rid) if self.session is not None
                    else W.encode_frame(reply[0], reply[1], rid))
        except Exception:   # a reply that cannot be framed (too large): our fault, not the peer's
            log.exception("%s could not frame the %s reply", peer, W._TYPE_NAMES.get(reply[0]))
            self._send_error(sock, rid, W.E_INTERNAL, INTERNAL)
            return True
        try:
            sock.sendall(data)
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

    def _send_error(self, sock, rid: int, code: int, message: str) -> None:
        """ERROR, sealed inside a session: an unsigned ERROR could come from anyone."""
        try:
            payload = W.encode_error(code, message)
            if self.session is not None:
                sock.sendall(self.session.seal(W.T_ERROR, payload, rid))
            else:
                W.send_frame(sock, W.T_ERROR, payload, rid)
        except (OSError, W.WireError):
            pass


class Service(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 16

    def __init__(self, addr, board: Board, keyring: "A.Keyring | None" = None,
                 limits: Limits | None = None):
        self.board = board
        self.keyring = keyring
        self.limits = limits or Limits()
        self.auth_failures = 0
        self.refused_connections = 0
        self.stopping = threading.Event()
        self._count_lock = threading.Lock()
        self._active: dict[str, int] = {}
        super().__init__(addr, Handler)

    def active_connections(self) -> int:
        with self._count_lock:
            return sum(self._active.values())

    def verify_request(self, request, client_address) -> bool:
        """Runs in the accepting thread, before any handler thread exists: a
        connection over the caps is closed at once and costs no thread."""
        ip = client_address[0]
        with self._count_lock:
            total, mine = sum(self._active.values()), self._active.get(ip, 0)
            if total < self.limits.max_connections and mine < self.limits.max_per_peer:
                self._active[ip] = mine + 1
                return True
            self.refused_connections += 1
        log.warning("%s:%d refused: %d connections open (%d from it), limits %d and %d per peer",
                    ip, client_address[1], total, mine, self.limits.max_connections,
                    self.limits.max_per_peer)
        return False

    def _release(self, client_address) -> None:
        ip = client_address[0]
        with self._count_lock:
            left = self._active.get(ip, 0) - 1
            if left > 0:
                self._active[ip] = left
            else:
                self._active.pop(ip, None)

    def process_request(self, request, client_address) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:   # no thread: the caller closes the socket
            self._release(client_address)
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(client_address)


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
    p.add_argument("--host", "--listen", dest="host", default=None, metavar="ADDR",
                   help="address to listen on (default: 0.0.0.0 with a key, 127.0.0.1 "
                        "without one)")
    p.add_argument("--port", type=int, default=5150, help="TCP port, 0 picks a free one")
    p.add_argument("--port-file", default=None, help="write the chosen port here once listening")
    p.add_argument("--key-file", default=None,
                   help="pre-shared HMAC key(s), mode 0600, lines KEY_ID:HEX (default: "
                        "$WQ_KEY_FILE, then $WQ_KEY)")
    p.add_argument("--insecure", action="store_true",
                   help="run without a key: frames are NOT authenticated, and the service "
                        "listens on 127.0.0.1 unless --listen says otherwise (bench use only; "
                        "also $WQ_INSECURE=1)")
    d = Limits()
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="connections served at once (default %(default)s)")
    p.add_argument("--max-per-peer", type=int, default=d.max_per_peer,
                   help="connections from one address (default %(default)s)")
    p.add_argument("--handshake-timeout", type=float, default=d.handshake_timeout,
                   help="seconds from connect to SESSION (default %(default)s)")
    p.add_argument("--frame-timeout", type=float, default=d.frame_timeout,
                   help="seconds from a frame's first byte to its last (default %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout,
                   help="seconds a connection may wait between frames (default %(default)s)")
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
        if not (args.insecure or os.environ.get("WQ_INSECURE") == "1"):
            log.error("no key: give --key-file (or $WQ_KEY_FILE / $WQ_KEY), or --insecure to "
                      "run unauthenticated on a bench")
            return 2
        log.warning("--insecure: frames are NOT authenticated (never on a production line)")
    host = args.host or ("0.0.0.0" if keyring is not None else "127.0.0.1")
    limits = Limits(args.max_connections, args.max_per_peer, args.handshake_timeout,
                    args.frame_timeout, args.idle_timeout)
    try:
        backend = make_backend(args.backend, args.model, device=args.device, work_dir=args.work_dir,
                               bitstream=args.bitstream)
        board = Board(Accelerator(backend), _classes(args.model), load_spec(args.model).layers())
        server = Service((host, args.port), board, keyring, limits)
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
