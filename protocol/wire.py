"""Ethernet (TCP) wire protocol between the STM32MP1 host and the board service.

Single source of truth for the framing; ``c_constants()`` feeds a C header the
same way ``protocol.stream.c_constants()`` does. Numpy and the standard
library only: the host runs this on the STM32MP1.

Every frame is a fixed 20-byte little-endian header, then the payload::

    magic        4 bytes  b"WQNT"
    version      u8       VERSION
    type         u8       one of FRAME_TYPES
    flags        u16      F_AUTH or 0; other bits must be 0
    request_id   u32      chosen by the client, echoed in the reply
    payload_len  u32      at most MAX_PAYLOAD
    crc32        u32      zlib.crc32 of the payload

With F_AUTH the payload is followed by a fixed AUTH_TRAILER_SIZE trailer
(``u32 key_id, u64 counter, mac[32]``, not counted in payload_len): HMAC-SHA256
over header and payload, see ``protocol.auth``. Without a key on both sides
(both started with --insecure) no frame carries it.

Requests and their replies (a reply type is the request type | REPLY_BIT, or
ERROR):

HELLO         request: empty.  reply INFO: see ``encode_info``.
LOAD_WEIGHTS  request: the weight blob bytes (``contract.blob``).
              reply WEIGHTS_ACK: u32 weights checksum as the accelerator saw it.
INFER_BATCH   request: u32 n, u16 h, u16 w, u16 c, u16 packing, n x u64 image
              id, then the n images (HWC each) as ``protocol.stream`` packs
              them: packing PACK_U8 (0), n*h*w*c uint8 pixels; PACK_DIE2 (1,
              wafer maps whose pixels are all die categories), per image
              image_words(h*w*c, PACK_DIE2) little-endian u32 words of 2-bit
              die states, which the service hands to the core unchanged.
              At most MAX_BATCH_IMAGES images.
              reply RESULTS: u32 n, u32 weights checksum (what the board ran
              this batch with, read under the board's lock; 0: no weights),
              then n records, one per image in request order: u64 id, u16
              status, u16 class_index, u16 count, then ``count`` int32 logits
              when status == 0, else ``count`` bytes of UTF-8 message (at
              most MAX_TEXT).
SESSION       request: client nonce[16], u32 key id (opens an authenticated
              connection). reply SESSION_ACK: server nonce[16], sealed.
ERROR         reply only: u32 code, then a UTF-8 message of at most MAX_TEXT
              bytes. The service closes the connection after an ERROR caused
              by a malformed frame. Inside a session ERROR is sealed too.

Each frame type has a length range (``FRAME_LIMITS``), checked on the header
before any payload is read; a service narrows it further to its model
(``service_limits``). ``protocol.batch`` packs and parses the INFER_BATCH
payload, ``protocol.results`` the RESULTS payload, both to this layout.
Version 2: RESULTS carries the weights checksum.
Version 3: INFO carries the core's ``max_batch`` (images in one accelerator
INFER_BATCH, 0 for a core without it) and ``packings`` (``protocol.stream``
PACK_* bitmask): the host sizes its batches by them; INFER_BATCH carries its
images' packing where version 2 had a reserved zero (PACK_U8 is 0).
"""
from __future__ import annotations

import socket
import struct
import time
import zlib
from dataclasses import dataclass

import numpy as np

from protocol import stream as S

MAGIC = b"WQNT"
VERSION = 3
HEADER = struct.Struct("<4sBBHIII")
HEADER_SIZE = HEADER.size
# Bounds every allocation made for a peer's frame: a batch of 64 maps of
# 256x256 is 4 MiB, a weight blob is at most 4 MiB (stream.MAX_MESSAGE_WORDS).
MAX_PAYLOAD = 64 << 20

T_HELLO = 0x01
T_LOAD_WEIGHTS = 0x02
T_INFER_BATCH = 0x03
T_SESSION = 0x04
REPLY_BIT = 0x80
T_INFO = T_HELLO | REPLY_BIT
T_WEIGHTS_ACK = T_LOAD_WEIGHTS | REPLY_BIT
T_RESULTS = T_INFER_BATCH | REPLY_BIT
T_SESSION_ACK = T_SESSION | REPLY_BIT
T_ERROR = 0xFF

FRAME_TYPES = {
    "HELLO": T_HELLO, "LOAD_WEIGHTS": T_LOAD_WEIGHTS, "INFER_BATCH": T_INFER_BATCH,
    "SESSION": T_SESSION,
    "INFO": T_INFO, "WEIGHTS_ACK": T_WEIGHTS_ACK, "RESULTS": T_RESULTS,
    "SESSION_ACK": T_SESSION_ACK, "ERROR": T_ERROR,
}
F_AUTH = 0x0001
FLAGS_KNOWN = F_AUTH
SESSION_NONCE_SIZE = 16
AUTH_MAC_SIZE = 32
AUTH_TRAILER = struct.Struct(f"<IQ{AUTH_MAC_SIZE}s")
AUTH_TRAILER_SIZE = AUTH_TRAILER.size
_TYPE_NAMES = {v: k for k, v in FRAME_TYPES.items()}
SESSION_SIZE = SESSION_NONCE_SIZE + 4      # client nonce, u32 key id
MAX_BATCH_IMAGES = 1024     # images in one INFER_BATCH (the host sends 64)
MAX_TEXT = 256              # bytes of an ERROR or per-image message
MAX_INFO = 64 << 10
MAX_BLOB_BYTES = 4 << 20    # a weight blob (protocol.stream.MAX_MESSAGE_WORDS words)
# Payload length range of each frame type, checked on the header: a peer
# cannot make this side read, let alone allocate, more than its type needs.
FRAME_LIMITS = {
    T_HELLO: (0, 0), T_SESSION: (SESSION_SIZE, SESSION_SIZE),
    T_LOAD_WEIGHTS: (0, MAX_BLOB_BYTES), T_INFER_BATCH: (12, MAX_PAYLOAD),
    T_INFO: (0, MAX_INFO), T_WEIGHTS_ACK: (4, 4), T_RESULTS: (8, MAX_PAYLOAD),
    T_SESSION_ACK: (SESSION_NONCE_SIZE, SESSION_NONCE_SIZE), T_ERROR: (4, 4 + MAX_TEXT),
}

# Status codes: per-image result status and ERROR frame codes share one space.
OK = 0
E_BAD_FRAME = 1       # framing broken (magic, version, crc, size, truncation)
E_BAD_REQUEST = 2     # frame well formed, payload not what the type needs
E_BAD_SHAPE = 3       # image size differs from the model input
E_NO_WEIGHTS = 4      # INFER before LOAD_WEIGHTS
E_BAD_WEIGHTS = 5     # blob rejected (length, checksum)
E_ACCELERATOR = 6     # accelerator replied with another error
E_INTERNAL = 7        # backend failure (timeout, I/O)
E_TOPOLOGY = 8        # host-side: model and core topologies differ
E_AUTH = 9            # missing, wrong or replayed HMAC; the connection is closed

STATUS_NAMES = {OK: "OK", E_BAD_FRAME: "BAD_FRAME", E_BAD_REQUEST: "BAD_REQUEST",
                E_BAD_SHAPE: "BAD_SHAPE", E_NO_WEIGHTS: "NO_WEIGHTS",
                E_BAD_WEIGHTS: "BAD_WEIGHTS", E_ACCELERATOR: "ACCELERATOR",
                E_INTERNAL: "INTERNAL", E_TOPOLOGY: "TOPOLOGY", E_AUTH: "AUTH"}

BATCH_HEAD = struct.Struct("<IHHHH")
RECORD_HEAD = struct.Struct("<QHHH")
RESULTS_HEAD = struct.Struct("<II")
NO_CLASS = 0xFFFF
# INFO fixed part, then backend name (u16 len + UTF-8), then u16 count of
# class names, each u8 len + UTF-8.
# The backend name of the service's C simulation of the core: the host sizes
# its requests to such a board by it (host_stm32mp1.client.auto_batch).
BACKEND_CSIM = "csim"
INFO_FIELDS = ("topology_hash", "weights_checksum", "weights_loaded", "core_version",
               "capabilities", "in_height", "in_width", "in_channels", "n_classes",
               "blob_words", "weight_loads", "max_batch", "packings")
_INFO_HEAD = struct.Struct("<" + "I" * len(INFO_FIELDS))


class WireError(Exception):
    """A frame that breaks the protocol; ``code`` is the ERROR code to answer with."""

    def __init__(self, message: str, code: int = E_BAD_FRAME):
        super().__init__(message)
        self.code = code


class ConnectionClosed(WireError):
    """The peer closed the connection between frames (not an error for a server)."""


class WireTimeout(WireError):
    """No complete frame within the timeout."""


class FrameRefused(WireError):
    """A header whose type or length this side does not accept here; nothing
    of the payload has been read."""

    def __init__(self, message: str, frame_type: int, request_id: int = 0):
        super().__init__(message, E_BAD_FRAME)
        self.frame_type, self.request_id = frame_type, request_id


def printable(text: str, limit: int = MAX_TEXT) -> str:
    """A text from a peer or a file, safe to print, log or store: control
    characters (ANSI escapes, CR, NUL...) become "?", and it is cut to ``limit``."""
    text = str(text)[:limit]
    return "".join(c if c.isprintable() or c == " " else "?" for c in text)


@dataclass(frozen=True)
class Frame:
    type: int
    request_id: int
    payload: bytes
    flags: int = 0
    header: bytes = b""          # as received: the HMAC covers it
    auth: bytes | None = None    # the AUTH_TRAILER bytes when F_AUTH is set

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, f"0x{self.type:02x}")


def encode_frame(ftype: int, payload: bytes = b"", request_id: int = 0, flags: int = 0) -> bytes:
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise WireError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD ({MAX_PAYLOAD})")
    head = HEADER.pack(MAGIC, VERSION, ftype, flags, request_id & 0xFFFFFFFF, len(payload),
                       zlib.crc32(payload) & 0xFFFFFFFF)
    return head + payload


def _read_exact(src, n: int, what: str, at_start: bool = False, deadline=None) -> bytes:
    # Received in place (recv_into): no chunk objects to allocate and join. The
    # buffer doubles as bytes arrive, so a header alone never makes this side
    # allocate the length it claims.
    buf, got = bytearray(min(n, 1 << 16)), 0
    while got < n:
        if got == len(buf):
            buf.extend(bytes(min(len(buf), n - len(buf))))
        try:
            if isinstance(src, socket.socket):
                if deadline is not None:   # bounds a peer that trickles bytes
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout("deadline")
                    src.settimeout(left)
                k = src.recv_into(memoryview(buf)[got:])
            else:
                chunk = src.read(n - got)
                buf[got:got + len(chunk)] = chunk
                k = len(chunk)
        except (socket.timeout, TimeoutError) as e:
            raise WireTimeout(f"timed out waiting for the {what} ({got} of {n} bytes)") from e
        except (ConnectionResetError, BrokenPipeError) as e:
            if at_start and not got:
                raise ConnectionClosed(f"connection reset by the peer: {e}") from e
            raise WireError(f"truncated frame: connection reset after {got} of {n} "
                            f"{what} bytes") from e
        if not k:
            if at_start and not got:
                raise ConnectionClosed("the peer closed the connection")
            raise WireError(f"truncated frame: got {got} of {n} {what} bytes "
                            "before the connection closed")
        got += k
    return bytes(buf)


def parse_header(head: bytes) -> tuple[int, int, int, int, int]:
    """Check a header; returns (type, flags, request_id, payload_len, crc)."""
    magic, version, ftype, flags, rid, length, crc = HEADER.unpack(head)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}: not a waferq frame (expected {MAGIC!r})")
    if version != VERSION:
        raise WireError(f"bad version {version}: this side speaks wire protocol version {VERSION}")
    if ftype not in _TYPE_NAMES:
        raise WireError(f"unknown frame type 0x{ftype:02x}")
    if flags & ~FLAGS_KNOWN:
        raise WireError(f"unknown flags 0x{flags:04x}")
    if length > MAX_PAYLOAD:
        raise WireError(f"oversize frame: payload of {length} bytes exceeds MAX_PAYLOAD "
                        f"({MAX_PAYLOAD} bytes)")
    return ftype, flags, rid, length, crc


def read_frame(src, timeout: float | None = None, deadline: float | None = None,
               frame_timeout: float | None = None, limits: dict | None = None) -> Frame:
    """Read one frame from a socket or a binary file-like object.

    The header is checked before the payload is read, so an oversize length
    never allocates. ``timeout`` applies to sockets (per receive call, and
    to the wait for a frame's first byte); ``deadline`` (time.monotonic())
    bounds the whole call; ``frame_timeout`` bounds the rest of a frame once
    its first byte has arrived, so a peer trickling bytes cannot hold the
    connection. ``limits`` (type -> (min, max) payload length; default
    FRAME_LIMITS) refuses other types and lengths with FrameRefused.
    """
    sock = isinstance(src, socket.socket)
    if sock and timeout is not None:
        src.settimeout(timeout)
    if sock and frame_timeout is not None:
        first = _read_exact(src, 1, "header", at_start=True, deadline=deadline)
        end = time.monotonic() + frame_timeout
        deadline = end if deadline is None else min(deadline, end)
        head = first + _read_exact(src, HEADER_SIZE - 1, "header", deadline=deadline)
    else:
        head = _read_exact(src, HEADER_SIZE, "header", at_start=True, deadline=deadline)
    ftype, flags, rid, length, crc = parse_header(head)
    lo, hi = (FRAME_LIMITS if limits is None else limits).get(ftype, (1, 0))
    if not lo <= length <= hi:
        name = _TYPE_NAMES[ftype]
        raise FrameRefused(f"{name} frame of {length} bytes refused here" if lo <= hi else
                           f"{name} frame not accepted here", ftype, rid)
    payload = _read_exact(src, length, "payload", deadline=deadline)
    if zlib.crc32(payload) & 0xFFFFFFFF != crc:
        raise WireError(f"crc mismatch: header says 0x{crc:08x}, payload has "
                        f"0x{zlib.crc32(payload) & 0xFFFFFFFF:08x}")
    auth = _read_exact(src, AUTH_TRAILER_SIZE, "auth trailer", deadline=deadline) \
        if flags & F_AUTH else None
    return Frame(ftype, rid, payload, flags, head, auth)


def send_frame(sock: socket.socket, ftype: int, payload: bytes = b"", request_id: int = 0) -> None:
    sock.sendall(encode_frame(ftype, payload, request_id))


# --- payloads --------------------------------------------------------------

def text_bytes(message: str) -> bytes:
    return str(message).encode("utf-8", "replace")[:MAX_TEXT]


def encode_error(code: int, message: str) -> bytes:
    return struct.pack("<I", code) + text_bytes(message)


def decode_error(payload: bytes) -> tuple[int, str]:
    """(code, message); the message is the peer's text, made printable."""
    if len(payload) < 4:
        raise WireError("ERROR payload shorter than its code", E_BAD_REQUEST)
    return struct.unpack_from("<I", payload)[0], printable(payload[4:].decode("utf-8", "replace"))


def encode_info(info: dict) -> bytes:
    out = [_INFO_HEAD.pack(*(int(info.get(k, 0)) & 0xFFFFFFFF for k in INFO_FIELDS))]
    backend = str(info.get("backend", "")).encode()[:0xFFFF]
    out.append(struct.pack("<H", len(backend)) + backend)
    classes = [c.encode()[:255] for c in info.get("classes", ())]
    out.append(struct.pack("<H", len(classes)))
    out += [struct.pack("<B", len(c)) + c for c in classes]
    return b"".join(out)


def decode_info(payload: bytes) -> dict:
    try:
        info = dict(zip(INFO_FIELDS, _INFO_HEAD.unpack_from(payload)))
        pos = _INFO_HEAD.size
        (n,) = struct.unpack_from("<H", payload, pos)
        info["backend"] = printable(payload[pos + 2:pos + 2 + n].decode())
        pos += 2 + n
        (count,) = struct.unpack_from("<H", payload, pos)
        pos += 2
        classes = []
        for _ in range(count):
            (n,) = struct.unpack_from("<B", payload, pos)
            classes.append(printable(payload[pos + 1:pos + 1 + n].decode()))
            pos += 1 + n
    except (struct.error, UnicodeDecodeError) as e:
        raise WireError(f"malformed INFO payload: {e}", E_BAD_REQUEST) from e
    info["classes"] = classes
    return info


def image_bytes(shape, packing: int = S.PACK_U8) -> int:
    """Bytes one image of ``shape`` (h, w, c) takes in an INFER_BATCH payload."""
    n = int(np.prod(shape))
    return n if packing == S.PACK_U8 else 4 * S.image_words(n, packing)


def c_constants() -> dict[str, int]:
    """Every constant a C implementation needs, by the name it has there."""
    consts = {
        "WQW_MAGIC": int.from_bytes(MAGIC, "little"),
        "WQW_VERSION": VERSION,
        "WQW_HEADER_SIZE": HEADER_SIZE,
        "WQW_MAX_PAYLOAD": MAX_PAYLOAD,
        "WQW_REPLY_BIT": REPLY_BIT,
        "WQWBATCH_HEADER_SIZE": BATCH_HEAD.size,
        "WQW_RECORD_HEADER_SIZE": RECORD_HEAD.size,
        "WQW_RESULTS_HEADER_SIZE": RESULTS_HEAD.size,
        "WQW_SESSION_SIZE": SESSION_SIZE,
        "WQW_MAX_BATCH_IMAGES": MAX_BATCH_IMAGES,
        "WQW_MAX_TEXT": MAX_TEXT,
        "WQW_MAX_INFO": MAX_INFO,
        "WQW_MAX_BLOB_BYTES": MAX_BLOB_BYTES,
        "WQW_NO_CLASS": NO_CLASS,
        "WQW_INFO_FIXED_SIZE": _INFO_HEAD.size,
        "WQW_F_AUTH": F_AUTH,
        "WQW_FLAGS_KNOWN": FLAGS_KNOWN,
        "WQW_SESSION_NONCE_SIZE": SESSION_NONCE_SIZE,
        "WQW_AUTH_MAC_SIZE": AUTH_MAC_SIZE,
        "WQW_AUTH_TRAILER_SIZE": AUTH_TRAILER_SIZE,
    }
    consts.update({f"WQW_T_{k}": v for k, v in FRAME_TYPES.items()})
    consts.update({f"WQW_S_{v}": k for k, v in STATUS_NAMES.items()})
    consts.update({f"WQW_INFO_{f.upper()}": i for i, f in enumerate(INFO_FIELDS)})
    for t, (lo, hi) in FRAME_LIMITS.items():
        consts[f"WQW_MIN_LEN_{_TYPE_NAMES[t]}"] = lo
        consts[f"WQW_MAX_LEN_{_TYPE_NAMES[t]}"] = hi
    return consts
