"""The input-code rule every stage of the core shares.

Pixels travel one byte a code (``protocol.pixels.pack_pixels``). A model's
codes are ``input_bits(spec)`` wide (8 for the wafer families, 1..8 for an
imported graph); ``contract.intmodel.IntModel`` refuses a code above
``2**in_bits - 1``, and so do the core (``hls/templates/wq_core.h``: an
``ERR_BAD_INPUT`` reply whose detail is the HWC index of the first such code)
and its golden model (``hls.refcore``). Nothing is masked: a code the model
cannot represent is an error, never a silently different image.
"""
from __future__ import annotations

import numpy as np

from contract.spec import input_bits, input_shape


def code_max(spec) -> int:
    return (1 << input_bits(spec)) - 1


def first_bad_code(pixels: np.ndarray, spec) -> int | None:
    """HWC index of the first code above the model's range, or None."""
    bad = np.flatnonzero(np.asarray(pixels).ravel() > code_max(spec))
    return int(bad[0]) if bad.size else None


def random_codes(spec, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uint8 images [n][H][W][C] of random codes within the model's input range."""
    return rng.integers(0, code_max(spec) + 1, (n, *input_shape(spec)), dtype=np.uint8)
