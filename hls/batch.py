"""How large an INFER_BATCH a generated core takes, and which packings.

The core answers a batch only after TLAST and the checksum, so it keeps every
record of the batch in one on-chip result buffer of ``max_batch *
record_words`` 32-bit words. ``max_batch`` is the largest power of two for
which

- that buffer fits RESULT_BRAM18 of the part's BRAM18 (a RAMB18E1 holds 512
  words of 32 bits, 36 wide; about 11 % of the XC7Z020's 280);
- the reply (header, records, checksum) fits the frame guard's MAX_WORDS
  (contract/board.toml [guard] max_words), so the guard never cuts it;
- the largest request (PACK_U8 images) fits the stream's MAX_MESSAGE_WORDS;
- n fits the request's 16-bit field.

For the 42x42 wafer-map CNN (9 classes, 11-word records) that is 1,024.
PACK_DIE2 is offered to 1-channel (wafer-map) cores only.
"""
from __future__ import annotations

from contract import board
from protocol import stream as S

RESULT_BRAM18 = 32        # BRAM18 the result buffer may take
WORDS_PER_BRAM18 = 512    # 32-bit words a RAMB18E1 holds at its 36-bit width


def _floor_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n >= 1 else 0


def max_batch(n_classes: int, feature_words: int, n_pixels: int, guard_words: int | None = None) -> int:
    rec = S.record_words(n_classes, feature_words)
    if guard_words is None:
        guard_words = board.load()["guard"]["max_words"]
    frame = S.HEADER_WORDS + S.TRAILER_WORDS
    limit = min(RESULT_BRAM18 * WORDS_PER_BRAM18 // rec,
                (guard_words - frame) // rec,
                (S.MAX_MESSAGE_WORDS - frame - 1) // S.image_words(n_pixels, S.PACK_U8),
                S.BATCH_N_MAX)
    if limit < 1:
        raise ValueError(f"an INFER_BATCH record of {rec} words does not fit the result buffer "
                         f"or the frame guard's {guard_words} words")
    return _floor_pow2(limit)


def packings(in_channels: int) -> int:
    """QUERY's ``packings`` bitmask."""
    mask = 1 << S.PACK_U8
    if in_channels == 1:
        mask |= 1 << S.PACK_DIE2
    return mask
