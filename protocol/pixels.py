"""How images become the words of ``protocol.stream`` messages.

The layouts are stream's (its docstring is the reference): INFER packs uint8
pixels four a word; INFER_BATCH takes PACK_U8 (the same bytes) or PACK_DIE2
(2-bit die states, sixteen a word). Numpy only: the host packs here, on the
STM32MP1, and the service, the C-sim and the tests pack and unpack here too.
"""
from __future__ import annotations

import numpy as np

from protocol import stream as S


def _flat_images(images: np.ndarray) -> np.ndarray:
    """[N][...] -> uint8 [N][pixels], HWC order kept."""
    a = np.asarray(images)
    if a.ndim < 2:
        raise ValueError(f"expected a batch of images [N][H][W][C], got shape {a.shape}")
    return np.ascontiguousarray(a.reshape(a.shape[0], -1), dtype=np.uint8)


def pack_u8(images: np.ndarray) -> np.ndarray:
    """uint8 images [N][H][W][C] -> uint32 [N][ceil(H*W*C/4)]: each image as INFER packs it."""
    flat = _flat_images(images)
    pad = (-flat.shape[1]) % 4
    if pad:
        flat = np.pad(flat, ((0, 0), (0, pad)))
    return np.ascontiguousarray(flat).view("<u4").astype(np.uint32)


def pack_pixels(image: np.ndarray) -> np.ndarray:
    """One uint8 HWC image -> uint32 words, four pixels a word, first pixel in
    bits [7:0]: INFER's payload, ``pack_u8`` of a batch of one."""
    return pack_u8(np.asarray(image)[None])[0]


_DIE_SHIFTS = (np.arange(16, dtype=np.uint32) * S.DIE_STATE_BITS)


def pack_die2(images: np.ndarray) -> np.ndarray:
    """2-bit die states [N][H][W][C] (0..3) -> uint32 [N][ceil(H*W*C/16)]:
    sixteen a word, first pixel in bits [1:0], zero padding."""
    flat = _flat_images(images)
    if flat.size and int(flat.max()) > 3:
        raise ValueError(f"die states are 0..3, got {int(flat.max())}")
    pad = (-flat.shape[1]) % 16
    if pad:
        flat = np.pad(flat, ((0, 0), (0, pad)))
    lanes = flat.reshape(flat.shape[0], -1, 16).astype(np.uint32) << _DIE_SHIFTS
    return np.bitwise_or.reduce(lanes, axis=2).astype(np.uint32)


def unpack_die2(words: np.ndarray, n_pixels: int) -> np.ndarray:
    """uint32 [..., words] -> die states uint8 [..., n_pixels] (inverse of pack_die2)."""
    w = np.asarray(words, dtype=np.uint32)
    states = (w[..., None] >> _DIE_SHIFTS) & 3
    return states.reshape(*w.shape[:-1], -1)[..., :n_pixels].astype(np.uint8)


_STATE_OF_CODE = np.full(256, 3, dtype=np.uint8)
_STATE_OF_CODE[list(S.DIE_PIXEL_CODES)] = np.arange(len(S.DIE_PIXEL_CODES), dtype=np.uint8)


def die_codes_from_pixels(images: np.ndarray) -> np.ndarray | None:
    """uint8 pixel codes -> 2-bit die states of the same shape, or None when
    any pixel is not one of ``S.DIE_PIXEL_CODES`` (send such images as PACK_U8)."""
    states = _STATE_OF_CODE[np.asarray(images, dtype=np.uint8)]
    return None if (states == 3).any() else states


_CODE_OF_STATE = np.array(S.DIE_PIXEL_CODES + (0,), dtype=np.uint8)


def pixels_from_die_states(states: np.ndarray) -> np.ndarray:
    """Die states 0..2 -> the uint8 pixel codes the model sees (3 maps to 0)."""
    return _CODE_OF_STATE[np.asarray(states, dtype=np.uint8) & 3]


def encode_infer_batch(images: np.ndarray, packing: int = S.PACK_U8, tag: int = 0) -> np.ndarray:
    """One INFER_BATCH request. ``images``: [N][H][W][C] uint8 pixel codes for
    PACK_U8, or 2-bit die states (``die_codes_from_pixels``) for PACK_DIE2."""
    if packing == S.PACK_U8:
        body = pack_u8(images)
    elif packing == S.PACK_DIE2:
        body = pack_die2(images)
    else:
        raise ValueError(f"unknown packing {packing}; known: {S.PACKINGS}")
    n = body.shape[0]
    if not 1 <= n <= S.BATCH_N_MAX:
        raise ValueError(f"a batch holds 1..{S.BATCH_N_MAX} images, got {n}")
    return S.encode_parts(S.OP_INFER_BATCH, ([S.batch_word(n, packing)], body), tag)


_LOW_BITS = np.uint32(0x01010101)


def die2_words_from_pixels(images: np.ndarray) -> np.ndarray | None:
    """uint8 pixel codes [N][H][W][C] -> ``pack_die2`` of their die states
    (uint32 [N][image_words]), or None when a pixel is not one of
    ``S.DIE_PIXEL_CODES`` (0, 128, 255). The same words as
    ``pack_die2(die_codes_from_pixels(images))`` (a test holds them equal),
    in twelve passes over uint32 words of four pixels: the host's hot path, where
    each pass over a batch costs about as much as any other."""
    a = np.asarray(images, dtype=np.uint8)
    n = a.shape[0]
    flat = a.reshape(n, -1)
    p = flat.shape[1]
    pad = (-p) % 16
    if pad:   # one copy into a padded buffer (np.pad is several passes)
        buf = np.empty((n, p + pad), dtype=np.uint8)
        buf[:, :p] = flat
        buf[:, p:] = 0
        flat = buf
    v = np.ascontiguousarray(flat).view("<u4")
    # In place where it can be: a fresh array an operation costs page faults.
    h = np.right_shift(v, 7)
    h &= _LOW_BITS                # bit 7 of each pixel
    t = v & _LOW_BITS             # bit 0
    s = h + t                     # code 0/128/255 -> state 0/1/2
    t &= h                        # 1 where the state is 2
    np.multiply(s, np.uint32(0x80), out=h)
    h -= t                        # state 0/1/2 -> 0/0x80/0xFF, byte by byte (no borrows)
    h ^= v
    if h.any():                   # a pixel was not a die category code
        return None
    # s * (2**6 + 2**12 + 2**18 + 2**24) puts the word's four states side by
    # side in its top byte, first pixel lowest; the other product terms stay
    # below bit 24 without overlapping one another (2 bits each), so no carry.
    s *= np.uint32(0x1041040)
    s >>= 24                      # (a strided copy of the top bytes is slower)
    return s.astype(np.uint8).view("<u4").astype(np.uint32, copy=False)
