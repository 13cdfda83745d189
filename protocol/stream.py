"""Accelerator stream message format: what crosses the RX and TX AXI-Stream FIFOs.

This module is the single source of truth. ``protocol.codegen`` writes
``wq_stream_format.h`` for the HLS core from the constants below, and
``tests/test_protocol_stream.py`` checks the header against this module.

Every message is a sequence of 32-bit words; the last word carries TLAST::

    word 0   header   [31:16] MAGIC  [15:8] VERSION  [7:0] opcode
    word 1   length   number of payload words that follow word 2
    word 2   tag      chosen by the sender, echoed in the reply
    word 3.. payload  ``length`` words
    last     checksum sum (mod 2**32) of every preceding word of the message

One request gives exactly one reply. A reply's opcode is the request's opcode
with bit 7 set, or ``OP_ERROR``. The core reads every request up to TLAST
before it answers, so a malformed message never leaves stale words behind.

Payloads (all words little-endian when carried in bytes):

QUERY         request: empty.
              reply: ``QUERY_FIELDS`` in that order.
LOAD_WEIGHTS  request: the weight blob (``contract.blob``), exactly
              ``blob_words`` words as QUERY reports.
              reply: [weights_checksum]
INFER         request: one image, uint8 pixels in HWC order, packed four to a
              word, first pixel in bits [7:0]; ceil(H*W*C/4) words. A model
              with in_bits < 8 (an import) takes codes 0..2**in_bits - 1 in
              those bytes and refuses any other (ERR_BAD_INPUT).
              reply: [class_index, n_classes int32 logits...]; a core built
              with CAP_FEATURES appends the last feature map (the input of
              the final GAP, for class activation maps): its codes in HWC
              order, one byte each (two's complement if the layer is
              signed), packed like the image; ceil(H*W*C/4) words.
INFER_BATCH   request: word 0 = ``batch_word(n, packing)``: n images in
              [15:0], the packing in [23:16], [31:24] zero; then n images
              back to back, each ``image_words(H*W*C, packing)`` words and
              starting on a word boundary:
                PACK_U8    uint8 pixels HWC, four a word, first in bits [7:0]
                           (INFER's packing);
                PACK_DIE2  2-bit die states HWC, sixteen a word, first in bits
                           [1:0]: 0 no die, 1 pass, 2 fail (the core maps them
                           to the pixel codes ``DIE_PIXEL_CODES``), 3 invalid.
                           1-channel (wafer-map) cores only.
              Padding after an image's last pixel is ignored.
              reply: n records of ``record_words(n_classes, feature_words)``
              words, in request order: [status, class_index, n_classes int32
              logits, the feature words of a CAP_FEATURES core (as INFER)].
              status 0 is a result; otherwise an ERR_* code for that image
              alone (ERR_BAD_PIXEL: a die state of 3), the record keeps its
              size and its other words are zero.
              Whole-message errors give one ERROR reply instead, in this
              order after the framing checks: length 0 (BAD_LENGTH, detail
              0); packing unknown or not taken by this core, or bits [31:24]
              set (BAD_PACKING, detail word0 >> 16); n == 0 or n > max_batch
              (BAD_BATCH, detail n); length != 1 + n * image_words
              (BAD_LENGTH, detail length); checksum; no weights. The core
              buffers the records and answers only after TLAST and the
              checksum, so a bad message never yields partial results.
ERROR         reply only: [error_code, detail]; detail is the offending
              opcode for unknown opcodes, or the word count seen for length
              errors, the index of the first out-of-range code for
              BAD_INPUT, or 0.

Version 2 added INFER_BATCH, the QUERY fields ``packings`` and ``max_batch``
and CAP_BATCH; a version-1 message gets BAD_VERSION.

DMA bytes a 42x42 wafer map: 1,764 as PACK_U8 (441 words), 444 as PACK_DIE2
(111 words: 1,764 states at 16 a word); plus 4 bytes a batch for word 0 and
16 for the header and checksum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAGIC = 0x5751  # "WQ"
VERSION = 2
HEADER_WORDS = 3
TRAILER_WORDS = 1
# Largest message the core accepts, in words. Must hold the largest blob the
# core can be generated for; the per-model limit is reported by QUERY.
MAX_MESSAGE_WORDS = 1 << 20

OP_QUERY = 0x01
OP_LOAD_WEIGHTS = 0x02
OP_INFER = 0x03
OP_INFER_BATCH = 0x04
REPLY_BIT = 0x80
OP_ERROR = 0xFF

OPCODES = {
    "QUERY": OP_QUERY,
    "LOAD_WEIGHTS": OP_LOAD_WEIGHTS,
    "INFER": OP_INFER,
    "INFER_BATCH": OP_INFER_BATCH,
    "ERROR": OP_ERROR,
}

ERR_BAD_MAGIC = 1
ERR_BAD_VERSION = 2
ERR_BAD_LENGTH = 3
ERR_UNKNOWN_OPCODE = 4
ERR_NO_WEIGHTS = 5
ERR_BAD_CHECKSUM = 6
# Written by the RTL frame guard (zybo_z7/rtl/wq_frame_guard.v), not the core:
# it closes a reply that stalled, ran too long or was cut by a soft reset by
# appending one whole ERROR reply, so the DMA always sees TLAST.
ERR_GUARD_TIMEOUT = 7
ERR_GUARD_OVERLONG = 8
ERR_GUARD_RESET = 9
GUARD_TAIL_WORDS = HEADER_WORDS + 2 + TRAILER_WORDS  # the appended ERROR reply
ERR_BAD_PIXEL = 10    # INFER_BATCH record: a PACK_DIE2 image holds a die state of 3
ERR_BAD_PACKING = 11  # INFER_BATCH: packing unknown or not taken by this core
ERR_BAD_BATCH = 12    # INFER_BATCH: n == 0 or n > the core's max_batch
# An image with a code above the model's input range (2**in_bits - 1, an
# imported model's in_bits < 8): the core refuses it as contract.intmodel does.
# INFER: an ERROR reply, detail = index (HWC) of the first such code;
# INFER_BATCH: that image's record.
ERR_BAD_INPUT = 13

ERRORS = {
    ERR_BAD_MAGIC: "bad magic",
    ERR_BAD_VERSION: "unsupported protocol version",
    ERR_BAD_LENGTH: "payload length does not match the message or the model",
    ERR_UNKNOWN_OPCODE: "unknown opcode",
    ERR_NO_WEIGHTS: "INFER before LOAD_WEIGHTS",
    ERR_BAD_CHECKSUM: "checksum mismatch",
    ERR_GUARD_TIMEOUT: "frame guard: the core stalled mid-reply (timeout)",
    ERR_GUARD_OVERLONG: "frame guard: reply longer than the guard's MAX_WORDS",
    ERR_GUARD_RESET: "frame guard: reply cut by a soft reset",
    ERR_BAD_PIXEL: "image holds a die state of 3 (PACK_DIE2 takes 0 no die, 1 pass, 2 fail)",
    ERR_BAD_PACKING: "input packing unknown or not supported by this core",
    ERR_BAD_BATCH: "batch size is 0 or above the core's max_batch",
    ERR_BAD_INPUT: "image has a code above the model's input range",
}

# INFER_BATCH input packings (word 0 bits [23:16]); QUERY's ``packings`` has
# bit 1 << PACK_x set for each one the core takes.
PACK_U8 = 0
PACK_DIE2 = 1
PACKINGS = {"U8": PACK_U8, "DIE2": PACK_DIE2}
PIXELS_PER_WORD = {PACK_U8: 4, PACK_DIE2: 16}
# Pixel code of die states 0 (no die), 1 (pass), 2 (fail): what the model sees
# (contract.preprocess.CATEGORY_CODES is this table). State 3 is invalid.
DIE_PIXEL_CODES = (0, 128, 255)
DIE_STATE_BITS = 2
# n_images is a 16-bit field; a core's own limit (QUERY max_batch) is lower.
BATCH_N_MAX = 0xFFFF
RECORD_HEAD_WORDS = 2  # status, class index

# Capability bits reported by QUERY.
CAP_RUNTIME_WEIGHTS = 1 << 0
CAP_LOGITS = 1 << 1
CAP_FEATURES = 1 << 2  # INFER replies carry the last feature map
CAP_BATCH = 1 << 3     # INFER_BATCH is taken (QUERY packings and max_batch say how)

# QUERY reply payload, one word each, in this order.
QUERY_FIELDS = (
    "topology_hash",
    "core_version",
    "capabilities",
    "weights_loaded",
    "in_height",
    "in_width",
    "in_channels",
    "n_classes",
    "blob_words",
    "weights_checksum",
    "packings",
    "max_batch",
)

MASK32 = 0xFFFFFFFF


class StreamError(Exception):
    """A reply that could not be parsed, or an ERROR reply from the core."""

    def __init__(self, message: str, code: int | None = None, detail: int | None = None):
        super().__init__(message)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Message:
    opcode: int
    tag: int
    payload: np.ndarray  # uint32 words


def checksum(words) -> int:
    a = np.asarray(words)
    if a.dtype == np.uint32:    # summed in 64 bits without a 64-bit copy
        return int(a.sum(dtype=np.uint64)) & MASK32
    return int(np.asarray(words, dtype=np.uint64).sum()) & MASK32


def header_word(opcode: int, magic: int = MAGIC, version: int = VERSION) -> int:
    return ((magic & 0xFFFF) << 16) | ((version & 0xFF) << 8) | (opcode & 0xFF)


def encode(opcode: int, payload=(), tag: int = 0) -> np.ndarray:
    """Build one message as uint32 words, checksum included (TLAST on the last)."""
    return encode_parts(opcode, (payload,), tag)


def encode_parts(opcode: int, parts, tag: int = 0) -> np.ndarray:
    """``encode`` of the parts' words back to back, written once into the
    message (a batch's images are most of a request: no copy of them to join)."""
    parts = [np.asarray(p, dtype=np.uint32).ravel() for p in parts]
    size = sum(p.size for p in parts)
    msg = np.empty(HEADER_WORDS + size + TRAILER_WORDS, dtype=np.uint32)
    msg[:HEADER_WORDS] = header_word(opcode), size, tag & MASK32
    pos = HEADER_WORDS
    for p in parts:
        msg[pos:pos + p.size] = p
        pos += p.size
    msg[-1] = checksum(msg[:-1])
    return msg


def decode(words) -> Message:
    """Parse one reply (or request) and check its framing; raises StreamError."""
    words = np.asarray(words, dtype=np.uint32).ravel()
    if words.size < HEADER_WORDS + TRAILER_WORDS:
        raise StreamError(f"message of {words.size} words is shorter than a header")
    head = int(words[0])
    if head >> 16 != MAGIC:
        raise StreamError(f"bad magic 0x{head >> 16:04x}")
    if (head >> 8) & 0xFF != VERSION:
        raise StreamError(f"unsupported version {(head >> 8) & 0xFF}")
    length = int(words[1])
    if words.size != HEADER_WORDS + length + TRAILER_WORDS:
        raise StreamError(f"length field says {length} payload words, message has "
                          f"{words.size - HEADER_WORDS - TRAILER_WORDS}")
    if checksum(words[:-1]) != int(words[-1]):
        raise StreamError("checksum mismatch")
    return Message(head & 0xFF, int(words[2]), words[HEADER_WORDS:-1].copy())


def raise_if_error(msg: Message) -> Message:
    if msg.opcode == OP_ERROR:
        code = int(msg.payload[0]) if msg.payload.size else -1
        detail = int(msg.payload[1]) if msg.payload.size > 1 else 0
        text = ERRORS.get(code, f"unknown error code {code}")
        raise StreamError(f"accelerator error {code}: {text} (detail {detail})", code, detail)
    return msg


def infer_words(n_pixels: int) -> int:
    return (n_pixels + 3) // 4


def image_words(n_pixels: int, packing: int = PACK_U8) -> int:
    """Words one image of ``n_pixels`` takes in an INFER_BATCH request."""
    per = PIXELS_PER_WORD.get(packing)
    if per is None:
        raise ValueError(f"unknown packing {packing}; known: {PACKINGS}")
    return (n_pixels + per - 1) // per


def record_words(n_classes: int, feature_words: int = 0) -> int:
    """Words of one INFER_BATCH reply record."""
    return RECORD_HEAD_WORDS + n_classes + feature_words


def batch_word(n: int, packing: int) -> int:
    """Word 0 of an INFER_BATCH payload."""
    return (n & 0xFFFF) | ((packing & 0xFF) << 16)


def parse_batch_reply(msg: Message, n: int, n_classes: int,
                      feature_shape: tuple[int, int, int] | None = None, signed: bool = False):
    """INFER_BATCH reply -> (status uint32 [n], class uint32 [n], int32 logits
    [n][n_classes]) and, with ``feature_shape``, feature codes int16 [n][H][W][C].
    An ERROR reply raises StreamError with its code; records with status != 0
    are per-image errors and their other fields are zero."""
    raise_if_error(msg)
    n_feat = infer_words(int(np.prod(feature_shape))) if feature_shape is not None else 0
    rec = record_words(n_classes, n_feat)
    if msg.opcode != (OP_INFER_BATCH | REPLY_BIT) or msg.payload.size != n * rec:
        raise StreamError(f"not an INFER_BATCH reply of {n} records of {rec} words: opcode "
                          f"0x{msg.opcode:02x}, {msg.payload.size} words")
    r = msg.payload.reshape(n, rec)
    status, classes = r[:, 0].copy(), r[:, 1].copy()
    logits = np.ascontiguousarray(r[:, 2:2 + n_classes]).view(np.int32)
    if feature_shape is None:
        return status, classes, logits
    raw = np.ascontiguousarray(r[:, 2 + n_classes:], dtype="<u4").view(np.uint8)
    codes = raw[:, :int(np.prod(feature_shape))].view(np.int8 if signed else np.uint8)
    return status, classes, logits, codes.astype(np.int16).reshape(n, *feature_shape)


def parse_query(msg: Message) -> dict:
    if msg.opcode != (OP_QUERY | REPLY_BIT) or msg.payload.size != len(QUERY_FIELDS):
        raise StreamError(f"not a QUERY reply: opcode 0x{msg.opcode:02x}, {msg.payload.size} words")
    return {name: int(v) for name, v in zip(QUERY_FIELDS, msg.payload)}


def parse_result(msg: Message, n_classes: int) -> tuple[int, np.ndarray]:
    if msg.opcode != (OP_INFER | REPLY_BIT) or msg.payload.size != 1 + n_classes:
        raise StreamError(f"not an INFER reply: opcode 0x{msg.opcode:02x}, {msg.payload.size} words")
    logits = msg.payload[1:].view(np.int32).copy()
    return int(msg.payload[0]), logits


def parse_result_with_features(msg: Message, n_classes: int, feature_shape: tuple[int, int, int],
                               signed: bool = False) -> tuple[int, np.ndarray, np.ndarray]:
    """INFER reply of a CAP_FEATURES core -> (class index, int32 logits,
    feature codes [H][W][C] as int16: uint8 codes, or int8 when ``signed``)."""
    n_feat = infer_words(int(np.prod(feature_shape)))
    if msg.opcode != (OP_INFER | REPLY_BIT) or msg.payload.size != 1 + n_classes + n_feat:
        raise StreamError(f"not an INFER reply with a {feature_shape} feature map: opcode "
                          f"0x{msg.opcode:02x}, {msg.payload.size} words, expected {1 + n_classes + n_feat}")
    logits = msg.payload[1:1 + n_classes].view(np.int32).copy()
    raw = np.ascontiguousarray(msg.payload[1 + n_classes:], dtype="<u4").view(np.uint8)
    codes = raw[:int(np.prod(feature_shape))].view(np.int8 if signed else np.uint8)
    return int(msg.payload[0]), logits, codes.astype(np.int16).reshape(feature_shape)


def to_bytes(words: np.ndarray) -> bytes:
    """Words as the DMA moves them: little-endian bytes."""
    return np.asarray(words, dtype="<u4").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise StreamError(f"{len(data)} bytes is not a whole number of 32-bit words")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def c_constants() -> dict[str, int]:
    """Every constant the C side needs, by the name it has there."""
    consts = {
        "WQ_MAGIC": MAGIC,
        "WQ_VERSION": VERSION,
        "WQ_HEADER_WORDS": HEADER_WORDS,
        "WQ_TRAILER_WORDS": TRAILER_WORDS,
        "WQ_MAX_MESSAGE_WORDS": MAX_MESSAGE_WORDS,
        "WQ_REPLY_BIT": REPLY_BIT,
        "WQ_CAP_RUNTIME_WEIGHTS": CAP_RUNTIME_WEIGHTS,
        "WQ_CAP_LOGITS": CAP_LOGITS,
        "WQ_CAP_FEATURES": CAP_FEATURES,
        "WQ_QUERY_WORDS": len(QUERY_FIELDS),
        "WQ_GUARD_TAIL_WORDS": GUARD_TAIL_WORDS,
        "WQ_CAP_BATCH": CAP_BATCH,
        "WQ_PACK_U8": PACK_U8,
        "WQ_PACK_DIE2": PACK_DIE2,
        "WQ_DIE_CODE_NONE": DIE_PIXEL_CODES[0],
        "WQ_DIE_CODE_PASS": DIE_PIXEL_CODES[1],
        "WQ_DIE_CODE_FAIL": DIE_PIXEL_CODES[2],
        "WQ_BATCH_N_MAX": BATCH_N_MAX,
        "WQ_RECORD_HEAD_WORDS": RECORD_HEAD_WORDS,
    }
    consts.update({f"WQ_OP_{k}": v for k, v in OPCODES.items()})
    names = {ERR_BAD_MAGIC: "BAD_MAGIC", ERR_BAD_VERSION: "BAD_VERSION",
             ERR_BAD_LENGTH: "BAD_LENGTH", ERR_UNKNOWN_OPCODE: "UNKNOWN_OPCODE",
             ERR_NO_WEIGHTS: "NO_WEIGHTS", ERR_BAD_CHECKSUM: "BAD_CHECKSUM",
             ERR_GUARD_TIMEOUT: "GUARD_TIMEOUT", ERR_GUARD_OVERLONG: "GUARD_OVERLONG",
             ERR_GUARD_RESET: "GUARD_RESET", ERR_BAD_PIXEL: "BAD_PIXEL",
             ERR_BAD_PACKING: "BAD_PACKING", ERR_BAD_BATCH: "BAD_BATCH",
             ERR_BAD_INPUT: "BAD_INPUT"}
    consts.update({f"WQ_ERR_{n}": c for c, n in names.items()})
    consts.update({f"WQ_QUERY_{f.upper()}": i for i, f in enumerate(QUERY_FIELDS)})
    return consts

