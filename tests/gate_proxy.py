"""A TCP proxy that lets a test decide how many INFER_BATCH frames reach a board.

Test scenarios that need "the run is still going when X happens" cannot rely
on timing: on a busy two-core CI machine the run may already be over. The
gate makes the order part of the data path instead. Frames from the host to
the board are parsed by the wire header; once ``budget`` INFER_BATCH frames
have gone through, the next one is held (the host sees a batch in flight)
until the test raises the budget. Every other frame, and everything the
board sends back, passes unchanged.
"""
from __future__ import annotations

import socket
import threading

from protocol import wire as W


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class GateProxy:
    def __init__(self, target_port: int, budget: int | None = None,
                 target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.cond = threading.Condition()
        self.budget = budget          # None: unlimited
        self.forwarded = 0            # INFER_BATCH frames that reached the board
        self.held = 0                 # frames waiting at the gate right now
        self.stopped = False
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    # -- test side ---------------------------------------------------------
    def open(self, budget: int | None = None) -> None:
        with self.cond:
            self.budget = budget
            self.cond.notify_all()

    def wait_held(self, timeout: float) -> bool:
        """True once a frame is held at the gate (the budget is spent and the
        host has another batch in flight)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.held > 0, timeout)

    def close(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.lsock.close()

    # -- proxy side --------------------------------------------------------
    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(self.target, timeout=10)
                s.settimeout(None)
            except OSError:       # the board is down: the host sees a dropped connection
                c.close()
                continue
            threading.Thread(target=self._up, args=(c, s), daemon=True).start()
            threading.Thread(target=self._down, args=(s, c), daemon=True).start()

    def _pass(self) -> bool:
        with self.cond:
            self.held += 1
            self.cond.notify_all()
            ok = self.cond.wait_for(lambda: self.stopped or self.budget is None
                                    or self.forwarded < self.budget)
            self.held -= 1
            if ok and not self.stopped:
                self.forwarded += 1
                return True
            return False

    def _up(self, src, dst):
        try:
            while True:
                head = _read_exact(src, W.HEADER_SIZE)
                if head is None:
                    break
                _, _, ftype, flags, _, n, _ = W.HEADER.unpack(head)
                body = _read_exact(src, n + (W.AUTH_TRAILER_SIZE if flags & W.F_AUTH else 0))
                if body is None:
                    break
                if ftype == W.T_INFER_BATCH and not self._pass():
                    break
                dst.sendall(head + body)
        except OSError:
            pass
        finally:
            _close(src, dst)

    def _down(self, src, dst):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src, dst)


def _close(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass
