"""The weight blob: the LOAD_WEIGHTS payload that the host sends at run time.

Layout, 32-bit little-endian words, one section per layer with run-time
parameters (``contract.graph.has_section``), in execution order::

    shift(s)     int32 words, ``contract.graph.shift_names`` (1, or 3 for add;
                 0 for the logits layer; none for a thresholds layer)
    bias         conv2d and dense only: out_features words, int32
    thresholds   thresholds layers only (``act`` "thresholds"): [O][2**out_bits - 1]
                 int32 words, channel by channel
    weights      conv2d and dense only: the layer's int weights in their
                 declared order (conv [O][KH][KW][I/groups], dense [O][I]),
                 each ``w_bits`` wide in two's complement (1-bit layers: bit
                 1 is +1 and bit 0 is -1), packed LSB first: value j of the layer sits at
                 bit (j * w_bits) % 32 of word (j * w_bits) // 32 of the
                 section. A 2-bit layer stores 16 weights a word. The section is
                 zero-padded to a whole word.

Topology (shapes, bit widths) is not in the blob: the accelerator has it from
synthesis and checks the blob's length against it. ``check_params`` checks
the values: every shift within SHIFT_MIN..SHIFT_MAX (0 where the layer does
not requantize), and the logits layer's biases small enough that a logit
fits the int32 it travels in. The service runs it before a blob reaches the
accelerator; the core and the reference give identical answers even for a
blob that fails it (hls/templates/wq_requant.h, contract.intmodel.rshift_rhe).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from protocol.stream import checksum as _checksum
from contract.graph import WEIGHTED, has_section, n_thresholds, shift_names, weight_shape

if TYPE_CHECKING:
    from contract.intmodel import IntModel


# Shifts the export and the core agree on: a right shift of 62 already maps
# every accumulator to 0 or -1 (MAX_RSHIFT in wq_requant.h); a left shift of
# 32 saturates any output of up to 16 bits. An export writes neither extreme.
SHIFT_MIN, SHIFT_MAX = -32, 62


class BlobError(ValueError):
    """A blob value outside what the core and the generator allow."""


def section_layers(layers: list[dict]) -> list[dict]:
    return [layer for layer in layers if has_section(layer)]


def n_weights(layer: dict) -> int:
    return int(np.prod(weight_shape(layer))) if layer["type"] in WEIGHTED else 0


def _n_out(layer: dict) -> int:
    return weight_shape(layer)[0] if layer["type"] in WEIGHTED else 0


def section_words(layer: dict) -> int:
    return (len(shift_names(layer)) + _n_out(layer) * (1 + n_thresholds(layer))
            + (n_weights(layer) * layer.get("w_bits", 0) + 31) // 32)


def blob_words(layers: list[dict]) -> int:
    return sum(section_words(layer) for layer in section_layers(layers))


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Signed ints -> uint32 words, ``bits`` each, LSB first (see module doc).
    At 1 bit the values must be -1 or +1."""
    v = np.asarray(values, dtype=np.int64).ravel()
    if bits == 1:
        if np.any(np.abs(v) != 1):
            raise BlobError("1-bit (bipolar) weights must be -1 or +1")
        v = (v + 1) >> 1
    v = v & ((1 << bits) - 1)
    n_words = (v.size * bits + 31) // 32
    bitpos = np.arange(v.size, dtype=np.int64) * bits
    out = np.zeros(n_words + 1, dtype=np.uint64)  # +1: a value may straddle a word
    np.add.at(out, bitpos // 32, (v << (bitpos % 32)).astype(np.uint64) & 0xFFFFFFFF)
    spill = (bitpos % 32) + bits > 32
    np.add.at(out, bitpos[spill] // 32 + 1, (v[spill] >> (32 - bitpos[spill] % 32)).astype(np.uint64))
    return out[:n_words].astype(np.uint32)


def unpack_bits(words: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits: uint32 words -> ``count`` sign-extended ints."""
    w = np.concatenate([np.asarray(words, dtype=np.int64), [0]])  # int64 holds any uint32
    bitpos = np.arange(count, dtype=np.int64) * bits
    lo = w[bitpos // 32] >> (bitpos % 32)
    hi = w[bitpos // 32 + 1] << (32 - bitpos % 32)
    raw = (lo | hi) & ((1 << bits) - 1)
    if bits == 1:
        return 2 * raw - 1
    return np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)


def pack(model: "IntModel") -> np.ndarray:
    parts = []
    for layer in section_layers(model.layers):
        name = layer["name"]
        shifts = [int(model.weights[f"{name}.{k}"]) for k in shift_names(layer)]
        parts.append(np.array(shifts, dtype=np.int32).view(np.uint32))
        if layer["type"] in WEIGHTED:
            parts.append(model.weights[f"{name}.b"].astype(np.int32).view(np.uint32))
            if n_thresholds(layer):
                parts.append(model.weights[f"{name}.thr"].astype(np.int32).ravel().view(np.uint32))
            parts.append(pack_bits(model.weights[f"{name}.w"], layer["w_bits"]))
    return np.concatenate(parts).astype(np.uint32)


def unpack(layers: list[dict], words: np.ndarray) -> dict[str, np.ndarray]:
    """Blob -> the weights dict of an IntModel; raises ValueError on a wrong length."""
    words = np.asarray(words, dtype=np.uint32)
    expected = blob_words(layers)
    if words.size != expected:
        raise ValueError(f"weight blob has {words.size} words, the topology needs {expected}")
    out, pos = {}, 0
    for layer in section_layers(layers):
        name, n_out, n_w = layer["name"], _n_out(layer), n_weights(layer)
        for key in shift_names(layer):
            out[f"{name}.{key}"] = words[pos:pos + 1].view(np.int32)[0].copy()
            pos += 1
        if layer["type"] not in WEIGHTED:
            continue
        out[f"{name}.b"] = words[pos:pos + n_out].view(np.int32).copy()
        pos += n_out
        if n_thresholds(layer):
            n_t = n_out * n_thresholds(layer)
            out[f"{name}.thr"] = words[pos:pos + n_t].view(np.int32).reshape(n_out, -1).copy()
            pos += n_t
        n_words = (n_w * layer["w_bits"] + 31) // 32
        flat = unpack_bits(words[pos:pos + n_words], layer["w_bits"], n_w).astype(np.int8)
        out[f"{name}.w"] = flat.reshape(weight_shape(layer))
        pos += n_words
    return out


def _max_sum(layer: dict) -> int:
    """Largest |sum of products| of one output of a weighted layer."""
    fan_in = int(np.prod(weight_shape(layer)[1:]))
    return fan_in * ((1 << layer["in_bits"]) - 1) * (1 << (layer["w_bits"] - 1))


def check_params(layers: list[dict], words: np.ndarray) -> None:
    """Range-check a blob's shifts and biases; raises BlobError naming the
    first bad value (layer, parameter, value, allowed range)."""
    weights = unpack(layers, words)
    for layer in section_layers(layers):
        name = layer["name"]
        for key in shift_names(layer):
            v = int(weights[f"{name}.{key}"])
            lo, hi = (SHIFT_MIN, SHIFT_MAX) if layer["requant"] or key != "shift" else (0, 0)
            if not lo <= v <= hi:
                raise BlobError(f"layer {name}: {key} {v} outside {lo}..{hi}")
        if layer["type"] in WEIGHTED and not layer["requant"]:
            # The logits layer: its sums travel as int32 logits.
            room = (1 << 31) - 1 - _max_sum(layer)
            b = weights[f"{name}.b"].astype(np.int64)
            bad = np.flatnonzero(np.abs(b) > room)
            if bad.size:
                raise BlobError(f"layer {name}: bias[{bad[0]}] {b[bad[0]]} outside "
                                f"-{room}..{room} (a logit must fit int32)")


def checksum(words: np.ndarray) -> int:
    return _checksum(words)


def write(path: str | Path, words: np.ndarray) -> None:
    Path(path).write_bytes(np.asarray(words, dtype="<u4").tobytes())


def read(path: str | Path) -> np.ndarray:
    data = Path(path).read_bytes()
    if len(data) % 4:
        raise ValueError(f"{path}: {len(data)} bytes is not a whole number of 32-bit words")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
