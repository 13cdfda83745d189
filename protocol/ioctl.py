"""ioctls of the waferq driver (``drivers/include/uapi/linux/waferq.h``), for Python.

The numbers are computed with the kernel's generic ``_IOC`` formula (the same
on ARM and x86): ``dir << 30 | size << 16 | type << 8 | nr``. The table below
is the only place they are written down; ``tests/test_driver_build.py`` checks
every number and struct size against the compiled header.

Structs are little-endian with fixed-width fields only, so one layout serves
the 32-bit board and a 64-bit host. User pointers travel as 64-bit integers.

Every function takes a file descriptor, or an object with an
``ioctl(cmd, arg, mutate)`` method shaped like ``fcntl.ioctl``: the driver's
user-space stand-in (``zybo_z7.devnode.SeqpacketFile``, drivers/README.md)
carries the same numbers and struct bytes over a socket.
"""
from __future__ import annotations

import ctypes
import fcntl
import struct

IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2
_NRSHIFT, _TYPESHIFT, _SIZESHIFT, _DIRSHIFT = 0, 8, 16, 30

# 0xBD: free in ioctl-number.rst of v6.1 and v6.12 (0xB7 is nsfs's).
WAFERQ_IOC_MAGIC = 0xBD
# The interface version WAFERQ_IOC_GET_API_VERSION reports.
WAFERQ_API_VERSION = 2
TIMEOUT_MIN_MS, TIMEOUT_MAX_MS = 1, 600000

# struct formats, by the C name.
STRUCTS = {
    # tx_messages, tx_bytes, rx_messages, rx_bytes, errors, timeouts
    "waferq_stats": "<6Q",
    # tx_ptr, rx_ptr, tx_len, rx_len, reply_len, reserved
    "waferq_submit": "<QQIIII",
    "__u32": "<I",
}
STATS_FIELDS = ("tx_messages", "tx_bytes", "rx_messages", "rx_bytes", "errors", "timeouts")

# (name, direction, nr, struct or None): the order of the UAPI header.
IOCTLS = (
    ("WAFERQ_IOC_RESET", IOC_NONE, 0, None),
    ("WAFERQ_IOC_GET_STATS", IOC_READ, 1, "waferq_stats"),
    ("WAFERQ_IOC_SET_TIMEOUT", IOC_WRITE, 2, "__u32"),
    ("WAFERQ_IOC_SUBMIT", IOC_READ | IOC_WRITE, 3, "waferq_submit"),
    ("WAFERQ_IOC_GET_API_VERSION", IOC_READ, 4, "__u32"),
)
WAFERQ_IOC_MAXNR = max(nr for _, _, nr, _ in IOCTLS)


def ioc(direction: int, type_: int, nr: int, size: int) -> int:
    """The kernel's ``_IOC(dir, type, nr, size)``."""
    if not (0 <= nr < 256 and 0 <= type_ < 256 and 0 <= size < (1 << 14)):
        raise ValueError(f"ioctl field out of range: type {type_}, nr {nr}, size {size}")
    return (direction << _DIRSHIFT) | (size << _SIZESHIFT) | (type_ << _TYPESHIFT) | (nr << _NRSHIFT)


def struct_size(name: str | None) -> int:
    return 0 if name is None else struct.calcsize(STRUCTS[name])


NUMBERS = {name: ioc(d, WAFERQ_IOC_MAGIC, nr, struct_size(s)) for name, d, nr, s in IOCTLS}
WAFERQ_IOC_RESET = NUMBERS["WAFERQ_IOC_RESET"]
WAFERQ_IOC_GET_STATS = NUMBERS["WAFERQ_IOC_GET_STATS"]
WAFERQ_IOC_SET_TIMEOUT = NUMBERS["WAFERQ_IOC_SET_TIMEOUT"]
WAFERQ_IOC_SUBMIT = NUMBERS["WAFERQ_IOC_SUBMIT"]
WAFERQ_IOC_GET_API_VERSION = NUMBERS["WAFERQ_IOC_GET_API_VERSION"]


def _ioctl(fd, cmd: int, arg=0, mutate: bool = False):
    method = getattr(fd, "ioctl", None)
    if method is not None:
        return method(cmd, arg, mutate)
    return fcntl.ioctl(fd, cmd, arg, mutate)


def reset(fd) -> None:
    """Abort what is in flight, drop a pending reply, soft-reset the core."""
    _ioctl(fd, WAFERQ_IOC_RESET)


def get_api_version(fd) -> int:
    buf = bytearray(struct_size("__u32"))
    _ioctl(fd, WAFERQ_IOC_GET_API_VERSION, buf, True)
    return struct.unpack(STRUCTS["__u32"], buf)[0]


def get_stats(fd) -> dict[str, int]:
    buf = bytearray(struct_size("waferq_stats"))
    _ioctl(fd, WAFERQ_IOC_GET_STATS, buf, True)
    return dict(zip(STATS_FIELDS, struct.unpack(STRUCTS["waferq_stats"], buf)))


def set_timeout(fd, ms: int) -> None:
    if not TIMEOUT_MIN_MS <= ms <= TIMEOUT_MAX_MS:
        raise ValueError(f"timeout {ms} ms is outside {TIMEOUT_MIN_MS}..{TIMEOUT_MAX_MS}")
    _ioctl(fd, WAFERQ_IOC_SET_TIMEOUT, struct.pack(STRUCTS["__u32"], ms))


def submit(fd: int, request: bytes, reply_capacity: int) -> bytes:
    """One round trip: send ``request`` (a whole message), return the reply bytes."""
    tx = ctypes.create_string_buffer(bytes(request), len(request))
    rx = ctypes.create_string_buffer(reply_capacity)
    arg = bytearray(struct.pack(STRUCTS["waferq_submit"], ctypes.addressof(tx),
                                ctypes.addressof(rx), len(request), reply_capacity, 0, 0))
    _ioctl(fd, WAFERQ_IOC_SUBMIT, arg, True)
    reply_len = struct.unpack(STRUCTS["waferq_submit"], arg)[4]
    return rx.raw[:reply_len]
