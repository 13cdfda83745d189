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
ERROR         reply only: [error_code, detail]; detail is the offending
              opcode for unknown opcodes, or the word count seen for length
              errors, the index of the first out-of-range code for
              BAD_INPUT, or 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAGIC = 0x5751  # "WQ"
VERSION = 1
HEADER_WORDS = 3
TRAILER_WORDS = 1
# Largest message the core accepts, in words. Must hold the largest blob the
# core can be generated for; the per-model limit is reported by QUERY.
MAX_MESSAGE_WORDS = 1 << 20

OP_QUERY = 0x01
OP_LOAD_WEIGHTS = 0x02
OP_INFER = 0x03
REPLY_BIT = 0x80
OP_ERROR = 0xFF

OPCODES = {
    "QUERY": OP_QUERY,
    "LOAD_WEIGHTS": OP_LOAD_WEIGHTS,
    "INFER": OP_INFER,
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
# An INFER image with a code above the model's input range (2**in_bits - 1, an
# imported model's in_bits < 8): the core refuses it as contract.intmodel does;
# detail = index (HWC) of the first such code.
ERR_BAD_INPUT = 10

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
    ERR_BAD_INPUT: "INFER image has a code above the model's input range",
}

# Capability bits reported by QUERY.
CAP_RUNTIME_WEIGHTS = 1 << 0
CAP_LOGITS = 1 << 1
CAP_FEATURES = 1 << 2  # INFER replies carry the last feature map

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
    return int(np.asarray(words, dtype=np.uint64).sum()) & MASK32


def header_word(opcode: int, magic: int = MAGIC, version: int = VERSION) -> int:
    return ((magic & 0xFFFF) << 16) | ((version & 0xFF) << 8) | (opcode & 0xFF)


def encode(opcode: int, payload=(), tag: int = 0) -> np.ndarray:
    """Build one message as uint32 words, checksum included (TLAST on the last)."""
    payload = np.asarray(payload, dtype=np.uint32).ravel()
    head = np.array([header_word(opcode), payload.size, tag & MASK32], dtype=np.uint32)
    body = np.concatenate([head, payload])
    return np.concatenate([body, np.array([checksum(body)], dtype=np.uint32)])


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


def pack_pixels(image: np.ndarray) -> np.ndarray:
    """uint8 HWC image -> uint32 words, four pixels a word, first pixel in bits [7:0]."""
    flat = np.ascontiguousarray(image, dtype=np.uint8).ravel()
    pad = (-flat.size) % 4
    if pad:
        flat = np.concatenate([flat, np.zeros(pad, np.uint8)])
    return flat.view("<u4").astype(np.uint32)


def infer_words(n_pixels: int) -> int:
    return (n_pixels + 3) // 4


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
    }
    consts.update({f"WQ_OP_{k}": v for k, v in OPCODES.items()})
    names = {ERR_BAD_MAGIC: "BAD_MAGIC", ERR_BAD_VERSION: "BAD_VERSION",
             ERR_BAD_LENGTH: "BAD_LENGTH", ERR_UNKNOWN_OPCODE: "UNKNOWN_OPCODE",
             ERR_NO_WEIGHTS: "NO_WEIGHTS", ERR_BAD_CHECKSUM: "BAD_CHECKSUM",
             ERR_GUARD_TIMEOUT: "GUARD_TIMEOUT", ERR_GUARD_OVERLONG: "GUARD_OVERLONG",
             ERR_GUARD_RESET: "GUARD_RESET", ERR_BAD_INPUT: "BAD_INPUT"}
    consts.update({f"WQ_ERR_{n}": c for c, n in names.items()})
    consts.update({f"WQ_QUERY_{f.upper()}": i for i, f in enumerate(QUERY_FIELDS)})
    return consts

