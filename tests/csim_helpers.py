"""What the C-simulation tests (test_hls_csim*.py) share: loading weights into a
core, and batch images in either packing."""
from __future__ import annotations

import numpy as np

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import IntModel


def load_weights(core, model: IntModel, tag: int = 0x1234) -> np.ndarray:
    words = blob.pack(model)
    reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, words, tag))))
    assert reply.tag == tag and int(reply.payload[0]) == blob.checksum(words)
    return words


def batch_images(model: IntModel, n: int, packing: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(what encode_infer_batch takes, the pixels the model sees)."""
    rng = np.random.default_rng(seed)
    if packing == S.PACK_DIE2:
        states = rng.integers(0, 3, (n, *model.input_shape), dtype=np.uint8)
        return states, PX.pixels_from_die_states(states)
    pixels = rng.integers(0, 256, (n, *model.input_shape), dtype=np.uint8)
    return pixels, pixels
