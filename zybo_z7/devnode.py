"""The system calls the chardev backend makes, on the driver's device node or
on its user-space stand-in.

``DevNodeFile`` is the real thing: open(), write(), read(), poll() and ioctl()
on /dev/waferq0. ``SeqpacketFile`` offers the same calls on a Unix
SOCK_SEQPACKET socket, one request frame a call, which
``bench.chardev_standin`` answers as the driver would (tests and benches;
drivers/README.md has the design). Torch-free: this runs on the board.
"""
from __future__ import annotations

import fcntl
import os
import select
import socket
import struct


class DevNodeFile:
    """The driver's device node: the system calls the backend makes, on a real fd."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR)

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def read(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def poll(self, timeout: float) -> int:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLERR)
        events = poller.poll(int(timeout * 1000))
        return events[0][1] if events else 0

    def ioctl(self, cmd: int, arg=0, mutate: bool = False):
        return fcntl.ioctl(self.fd, cmd, arg, mutate)

    def close(self) -> None:
        os.close(self.fd)


# The stand-in's frames (SeqpacketFile): packets of at most CHUNK bytes (one
# packet is bounded by the socket buffer, and a request can be 4 MiB), the
# head and the payload's first bytes in the first one, so that a call with a
# small payload (and a batch's reply) is one packet each way, as it is one
# system call on the device node. Requests: head <op, arg, payload bytes>.
# Answers: head <result (>= 0, or -errno), payload bytes>.
OP_WRITE, OP_READ, OP_POLL, OP_IOCTL = 1, 2, 3, 4
REQUEST, ANSWER, CHUNK = struct.Struct("<IIQ"), struct.Struct("<qQ"), 1 << 16


def send_frame(sock: socket.socket, head: bytes, payload: bytes = b"") -> None:
    view = memoryview(payload).cast("B")
    first = CHUNK - len(head)
    sock.sendmsg([head, view[:first]])
    for i in range(first, len(view), CHUNK):
        sock.send(view[i:i + CHUNK])


def recv_frame(sock: socket.socket, head: struct.Struct):
    """(head fields..., payload); ConnectionError when the peer is gone."""
    raw = sock.recv(CHUNK)
    if len(raw) < head.size:
        raise ConnectionError("the stand-in closed the connection")
    *fields, size = head.unpack_from(raw)
    if len(raw) - head.size >= size:
        return (*fields, raw[head.size:head.size + size])
    payload = bytearray(size)
    got = len(raw) - head.size
    payload[:got] = memoryview(raw)[head.size:]
    view = memoryview(payload)
    while got < size:
        k = sock.recv_into(view[got:], min(CHUNK, size - got))
        if not k:
            raise ConnectionError("the stand-in closed the connection mid-frame")
        got += k
    return (*fields, bytes(payload))


class SeqpacketFile:
    """The same calls as DevNodeFile, made on the driver's user-space stand-in.

    The only seam between the backend and the tests: when --device names a
    Unix socket, each system call becomes one request frame on a SOCK_SEQPACKET
    connection, and the stand-in answers it as the driver would (result or
    -errno, plus the bytes read or the ioctl's struct). connect() is open(): the
    stand-in answers it first (0 or -EBUSY). drivers/README.md has the design.
    """

    def __init__(self, path: str, timeout: float):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # A healthy stand-in answers within the driver's own timeout. As a
        # kernel timeout where it can be: on a socket with settimeout() Python
        # polls before every send and receive, two system calls for one.
        limit = 2 * timeout + 5
        try:
            tv = struct.pack("@ll", int(limit), int(limit % 1 * 1e6))
            for opt in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                self.sock.setsockopt(socket.SOL_SOCKET, opt, tv)
        except (OSError, struct.error):   # another struct timeval (32-bit, 64-bit time_t)
            self.sock.settimeout(limit)
        try:
            self.sock.connect(path)
            self._result(*recv_frame(self.sock, ANSWER))
        except BlockingIOError:
            self.sock.close()
            raise socket.timeout("timed out") from None
        except BaseException:
            self.sock.close()
            raise

    @staticmethod
    def _result(result: int, payload: bytes):
        if result < 0:
            raise OSError(-result, os.strerror(-result))
        return result, payload

    def _call(self, op: int, arg: int = 0, payload: bytes = b""):
        try:
            send_frame(self.sock, REQUEST.pack(op, arg, len(payload)), payload)
            return self._result(*recv_frame(self.sock, ANSWER))
        except BlockingIOError:   # the kernel timeout ran out: what settimeout() raises
            raise socket.timeout("timed out") from None

    def write(self, data: bytes) -> int:
        return self._call(OP_WRITE, 0, bytes(data))[0]

    def read(self, size: int) -> bytes:
        return self._call(OP_READ, size)[1]

    def poll(self, timeout: float) -> int:
        return self._call(OP_POLL, max(0, int(timeout * 1000)))[0]

    def ioctl(self, cmd: int, arg=0, mutate: bool = False):
        data = bytes(arg) if isinstance(arg, (bytes, bytearray)) else b""
        _, out = self._call(OP_IOCTL, cmd, data)
        if isinstance(arg, bytearray) and mutate:
            arg[:] = out
            return 0
        return out if data else 0

    def close(self) -> None:
        # close(2) on the device returns after release(): wait for the stand-in
        # to hang up, so that an open() right after this one is not refused.
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(5.0)
            while self.sock.recv(CHUNK):
                pass
        except OSError:
            pass
        self.sock.close()
