"""The INFER_BATCH payload of ``protocol.wire``, packed and parsed in numpy.

Layout (wire.py's docstring has it too): u32 n, u16 h, u16 w, u16 c, u16
packing, n u64 image ids, then the n images as ``protocol.pixels`` packs them:
PACK_U8 bytes, or PACK_DIE2 words of 2-bit die states that the service hands
to the core unchanged. Numpy only: the host packs here, on the STM32MP1.
"""
from __future__ import annotations

import numpy as np

from protocol import pixels as PX
from protocol import stream as S
from protocol import wire as W


def encode_batch_words(words: np.ndarray, ids, shape, packing: int) -> bytes:
    """INFER_BATCH payload of images already packed as the stream carries
    them (uint32 [N][image_words], e.g. ``pixels.die2_words_from_pixels``)."""
    words = np.ascontiguousarray(words, dtype="<u4")
    h, w, c = shape
    n = words.shape[0]
    ids = np.asarray(ids, dtype="<u8").ravel()
    if ids.size != n:
        raise ValueError(f"{ids.size} ids for {n} images")
    if words.shape[1:] != (S.image_words(h * w * c, packing),):
        raise ValueError(f"{words.shape[1:]} words an image, {h}x{w}x{c} takes "
                         f"{S.image_words(h * w * c, packing)}")
    return W.BATCH_HEAD.pack(n, h, w, c, packing) + ids.tobytes() + words.tobytes()


def encode_batch(images: np.ndarray, ids, packing: int = S.PACK_U8) -> bytes:
    """uint8 images [N][H][W][C] and N ids -> INFER_BATCH payload. ``images``
    are pixel codes for PACK_U8, die states 0..2 for PACK_DIE2."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim != 4:
        raise ValueError(f"images must be N x H x W x C, got shape {images.shape}")
    n, h, w, c = images.shape
    ids = np.asarray(ids, dtype="<u8").ravel()
    if ids.size != n:
        raise ValueError(f"{ids.size} ids for {n} images")
    if packing == S.PACK_U8:
        body = images.tobytes()
    elif packing == S.PACK_DIE2:
        body = PX.pack_die2(images).astype("<u4").tobytes()
    else:
        raise ValueError(f"unknown packing {packing}; known: {S.PACKINGS}")
    return W.BATCH_HEAD.pack(n, h, w, c, packing) + ids.tobytes() + body


def decode_batch_packed(payload: bytes) -> tuple[np.ndarray, np.ndarray, int, tuple]:
    """INFER_BATCH payload -> (ids uint64 [N], images, packing, (h, w, c)):
    images are uint8 [N][H][W][C] for PACK_U8, the stream's uint32 words
    [N][image_words] for PACK_DIE2 (what the core takes, unchanged)."""
    if len(payload) < W.BATCH_HEAD.size:
        raise W.WireError("INFER_BATCH payload shorter than its header", W.E_BAD_REQUEST)
    n, h, w, c, packing = W.BATCH_HEAD.unpack_from(payload)
    if n > W.MAX_BATCH_IMAGES:
        raise W.WireError(f"INFER_BATCH of {n} images: at most {W.MAX_BATCH_IMAGES} a batch",
                          W.E_BAD_REQUEST)
    if packing not in (S.PACK_U8, S.PACK_DIE2):
        raise W.WireError(f"INFER_BATCH packing {packing} unknown: 0 (bytes) or 1 (die states)",
                          W.E_BAD_REQUEST)
    need = W.BATCH_HEAD.size + 8 * n + n * W.image_bytes((h, w, c), packing)
    if len(payload) != need:
        raise W.WireError(f"INFER_BATCH of {n} images of {h}x{w}x{c} needs {need} bytes, "
                          f"got {len(payload)}", W.E_BAD_REQUEST)
    pos = W.BATCH_HEAD.size
    ids = np.frombuffer(payload, dtype="<u8", count=n, offset=pos).astype(np.uint64)
    if packing == S.PACK_U8:
        pix = np.frombuffer(payload, dtype=np.uint8, offset=pos + 8 * n)
        return ids, pix.reshape(n, h, w, c), packing, (h, w, c)
    words = np.frombuffer(payload, dtype="<u4", offset=pos + 8 * n).astype(np.uint32)
    return ids, words.reshape(n, -1), packing, (h, w, c)


def decode_batch(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """INFER_BATCH payload -> (ids uint64 [N], uint8 pixel codes [N][H][W][C]);
    die states come back as the pixel codes the model sees (3 as 0)."""
    ids, data, packing, shape = decode_batch_packed(payload)
    if packing == S.PACK_U8:
        return ids, data
    states = PX.unpack_die2(data, int(np.prod(shape)))
    return ids, PX.pixels_from_die_states(states).reshape(len(ids), *shape)
