"""The waferq driver's user-space stand-in: a Unix SOCK_SEQPACKET socket that
answers ``zybo_z7.devnode.SeqpacketFile`` as the driver would.

Used by the service's tests (tests/test_chardev_backend.py) and by
``bench.end_to_end``, where it plays the char device between the board service
(another process) and a core (the reference core or the C simulation), so the
service's CPU time is measured with every system call it would make on the
board. It is not a model of the driver (drivers/README.md): no DMA, no
locking, no signals. ``lib`` is the driver's own message checks built for user
space (tests/driver_helpers.msg_lib); without it only the size limit is checked.
"""
from __future__ import annotations

import ctypes
import errno
import select
import socket
import struct
import threading
import time

import numpy as np

from protocol import ioctl as IOC
from protocol import stream as S
from zybo_z7 import devnode as D


class SocketDriverStandIn:
    """Answers the backend's SeqpacketFile frames with the driver's documented results.

    A stand-in for the service's tests only: no DMA, no locking, no signals."""

    def __init__(self, path, core, msg_lib=None):
        self.path, self.core, self.lib = str(path), core, msg_lib
        self.stats = dict.fromkeys(IOC.STATS_FIELDS, 0)
        self.timeout_ms = 5000
        self.api_version = IOC.WAFERQ_API_VERSION
        self.stall_next = 0     # requests the "core" swallows without a reply
        self.state, self.reply, self.deadline = "idle", None, 0.0
        self.in_use = threading.Lock()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.path)
        self.listener.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.listener.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            if not self.in_use.acquire(blocking=False):
                D.send_frame(conn, D.ANSWER.pack(-errno.EBUSY, 0))
                return
            try:
                D.send_frame(conn, D.ANSWER.pack(0, 0))
                while True:
                    try:
                        op, arg, payload = D.recv_frame(conn, D.REQUEST)
                    except (ConnectionError, OSError):
                        return
                    result, out = self._op(op, arg, payload)
                    try:
                        D.send_frame(conn, D.ANSWER.pack(result, len(out)), out)
                    except OSError:     # the opener died meanwhile: release() below
                        return
            finally:
                self.state, self.reply = "idle", None  # release(): drop any pending reply
                self.in_use.release()

    def _op(self, op, arg, payload):
        if op == D.OP_WRITE:
            return self._write(payload), b""
        if op == D.OP_READ:
            return self._read(arg)
        if op == D.OP_POLL:
            return self._poll(arg), b""
        if op == D.OP_IOCTL:
            return self._ioctl(arg, payload)
        return -errno.EINVAL, b""

    def _wait_reply(self):
        """waferq_wait_reply(): a stalled core is waited for until its deadline."""
        if self.state == "ready":
            return 0
        time.sleep(max(0.0, self.deadline - time.monotonic()))
        self.stats["timeouts"] += 1
        self.state, self.reply = "idle", None
        return -errno.ETIMEDOUT

    def _write(self, data):
        rc = self._check(data)
        if rc:
            self.stats["errors"] += 1
            return rc
        if self.state != "idle":  # waferq_settle(): an unread reply is dropped
            self._wait_reply()
            self.state, self.reply = "idle", None
        self.deadline = time.monotonic() + self.timeout_ms / 1000
        if self.stall_next:
            self.stall_next -= 1
            self.state = "waiting"
        else:
            self.reply = S.to_bytes(self.core.transact(np.frombuffer(data, "<u4")))
            self.state = "ready"
        self.stats["tx_messages"] += 1
        self.stats["tx_bytes"] += len(data)
        return len(data)

    def _check(self, data) -> int:
        if self.lib is None:
            return -errno.EMSGSIZE if len(data) > 4 * S.MAX_MESSAGE_WORDS else 0
        why = ctypes.c_char_p()
        head = data[:S.HEADER_WORDS * 4].ljust(S.HEADER_WORDS * 4, b"\0")
        return self.lib.waferq_msg_check_size(len(data), ctypes.byref(why)) or \
            self.lib.waferq_msg_check(head, len(data), ctypes.byref(why))

    def _poll(self, ms):
        if self.state == "idle":
            return select.POLLOUT
        if self.state == "waiting":  # a stalled core never answers
            time.sleep(ms / 1000)
            return 0
        return select.POLLIN

    def _read(self, size):
        if self.state == "idle":
            return -errno.ENOMSG, b""
        rc = self._wait_reply()
        if rc:
            return rc, b""
        if len(self.reply) > size:
            return -errno.EMSGSIZE, b""
        reply, self.state, self.reply = self.reply, "idle", None
        self.stats["rx_messages"] += 1
        self.stats["rx_bytes"] += len(reply)
        return len(reply), reply

    def _ioctl(self, cmd, arg):
        if (cmd >> 8) & 0xFF != IOC.WAFERQ_IOC_MAGIC or cmd & 0xFF > IOC.WAFERQ_IOC_MAXNR:
            return -errno.ENOTTY, b""
        if cmd == IOC.WAFERQ_IOC_RESET:
            self.state, self.reply = "idle", None
            self.core.reset()
            return 0, b""
        if cmd == IOC.WAFERQ_IOC_GET_STATS:
            return 0, struct.pack(IOC.STRUCTS["waferq_stats"],
                                  *(self.stats[f] for f in IOC.STATS_FIELDS))
        if cmd == IOC.WAFERQ_IOC_GET_API_VERSION:
            return 0, struct.pack(IOC.STRUCTS["__u32"], self.api_version)
        if cmd == IOC.WAFERQ_IOC_SET_TIMEOUT:
            (ms,) = struct.unpack(IOC.STRUCTS["__u32"], arg)
            if not IOC.TIMEOUT_MIN_MS <= ms <= IOC.TIMEOUT_MAX_MS:
                return -errno.EINVAL, b""
            self.timeout_ms = ms
            return 0, b""
        # SUBMIT names buffers in the caller's memory, which a socket cannot reach.
        return -errno.EOPNOTSUPP, b""
