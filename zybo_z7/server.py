"""The board service's network side: one thread per connection, under caps.

Limits (``Limits``): connections in all and per peer are capped in the
accepting thread, so a flood costs no threads; before SESSION only a SESSION
frame of its exact size is read, within a handshake deadline; every frame has
a deadline from its first byte and a length range for its type
(``wire.FRAME_LIMITS``, narrowed to the model's image size).

Authentication failures are logged at ERROR with their reason; the peer gets
E_AUTH and a generic text. Inside a session every reply, ERROR included, is
sealed.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from dataclasses import dataclass

import numpy as np

from protocol import auth as A
from protocol import batch as WB
from protocol import results as R
from protocol import wire as W

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


class Handler(socketserver.BaseRequestHandler):
    server: "Service"
    session: "A.Session | None" = None
    verified = False

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

    def _dispatch(self, sock, peer, board, frame: W.Frame) -> bool:
        rid = frame.request_id
        try:
            if frame.type == W.T_HELLO:
                reply = (W.T_INFO, W.encode_info(board.hello()))
            elif frame.type == W.T_LOAD_WEIGHTS:
                reply = (W.T_WEIGHTS_ACK, np.array([board.load_weights(frame.payload)], "<u4").tobytes())
            elif frame.type == W.T_INFER_BATCH:
                ids, images, packing, shape = WB.decode_batch_packed(frame.payload)
                records, checksum = board.infer_batch(ids, images, packing, shape)
                assert len(records) == len(ids)
                log.debug("%s batch of %d", peer, len(ids))
                reply = (W.T_RESULTS, R.encode(records, checksum))
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

    def __init__(self, addr, board, keyring: "A.Keyring | None" = None,
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
