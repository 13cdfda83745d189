"""The integer model: what the export writes and every later stage executes.

Files in ``build/<model>/export/``:

- ``model.json``: the ``CNNSpec``, the layer list (geometry, bit widths) and
  the power-of-two scales (``*_scale_log2``), the topology hash and the
  weights checksum.
- ``weights.npz``: per layer ``<name>.w`` (int8, conv [O][KH][KW][I], dense
  [O][I] with I in HWC flatten order), ``<name>.b`` (int32 [O]) and
  ``<name>.shift`` (int32 scalar).
- ``weights.bin``: the weight blob (see ``quant.blob``), sent by the host.

Arithmetic (all integer): a conv or dense layer computes
``acc = sum(x_q * w_q) + b_q`` in int64 (the accelerator uses wide enough
ap_int), then, if it has a ReLU-quant, ``y_q = clamp(rshift_rhe(acc, shift),
0, 2**out_bits - 1)``, where ``rshift_rhe`` divides by ``2**shift`` rounding
half to even (torch.round's rule, which Brevitas uses). The last dense layer
returns ``acc`` as the logits; their real value is ``acc * 2**logit_scale_log2``.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quant.spec import INPUT_BITS, INPUT_SCALE_LOG2, CNNSpec


def rshift_rhe(acc: np.ndarray, shift: int) -> np.ndarray:
    """acc / 2**shift rounded half to even; a negative shift multiplies."""
    acc = np.asarray(acc, dtype=np.int64)
    if shift <= 0:
        return acc << -shift
    half = np.int64(1) << (shift - 1)
    odd = (acc >> shift) & 1
    return (acc + half - 1 + odd) >> shift


def topology_hash(layers: list[dict]) -> int:
    """CRC32 of the canonical layer list: equal hashes mean one synthesized core fits."""
    text = json.dumps(layers, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


@dataclass
class IntModel:
    spec: CNNSpec
    weights: dict[str, np.ndarray]          # "<layer>.w", "<layer>.b", "<layer>.shift"
    logit_scale_log2: int = 0

    @property
    def layers(self) -> list[dict]:
        return self.spec.layers()

    @property
    def topology_hash(self) -> int:
        return topology_hash(self.layers)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.spec.in_size, self.spec.in_size, self.spec.in_channels)

    # --- files -----------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        from quant import blob

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        words = blob.pack(self)
        meta = {
            "format_version": 1,
            "spec": self.spec.to_dict(),
            "layers": self.layers,
            "input": {"bits": INPUT_BITS, "scale_log2": INPUT_SCALE_LOG2},
            "logit_scale_log2": self.logit_scale_log2,
            "topology_hash": self.topology_hash,
            "blob_words": int(words.size),
            "weights_checksum": blob.checksum(words),
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=1))
        np.savez(folder / "weights.npz", **self.weights)
        blob.write(folder / "weights.bin", words)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "IntModel":
        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        with np.load(folder / "weights.npz") as z:
            weights = {k: z[k] for k in z.files}
        model = cls(CNNSpec.from_dict(meta["spec"]), weights, int(meta["logit_scale_log2"]))
        if model.topology_hash != meta["topology_hash"]:
            raise ValueError(f"{folder}/model.json: topology hash does not match its layer list")
        return model

    # --- execution -------------------------------------------------------
    def forward(self, images: np.ndarray) -> np.ndarray:
        """uint8 images [N][H][W][C] (or [N][H][W]) -> int64 logits [N][n_classes]."""
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"input shape {x.shape[1:]} != model input {self.input_shape}")
        x = x.astype(np.int64)
        for layer in self.layers:
            x = _run_layer(layer, x, self.weights)
        return x

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = self.forward(images)
        return logits.argmax(axis=1), logits


def _requant(acc: np.ndarray, layer: dict, weights: dict) -> np.ndarray:
    if not layer["relu"]:
        return acc
    y = rshift_rhe(acc, int(weights[f"{layer['name']}.shift"]))
    return np.clip(y, 0, (1 << layer["out_bits"]) - 1)


def _run_layer(layer: dict, x: np.ndarray, weights: dict) -> np.ndarray:
    name, kind = layer["name"], layer["type"]
    if kind == "conv2d":
        w = weights[f"{name}.w"].astype(np.int64)          # [O][K][K][I]
        k, p, s = layer["kernel"], layer["pad"], layer["stride"]
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        n, hp, wp, c = xp.shape
        oh, ow = (hp - k) // s + 1, (wp - k) // s + 1
        cols = np.empty((n, oh, ow, k, k, c), dtype=np.int64)
        for ky in range(k):
            for kx in range(k):
                cols[:, :, :, ky, kx, :] = xp[:, ky:ky + s * oh:s, kx:kx + s * ow:s, :]
        acc = cols.reshape(n, oh, ow, -1) @ w.reshape(w.shape[0], -1).T
        acc += weights[f"{name}.b"].astype(np.int64)
        return _requant(acc, layer, weights)
    if kind == "maxpool":
        q = layer["pool"]
        n, h, w_, c = x.shape
        oh, ow = h // q, w_ // q
        return x[:, :oh * q, :ow * q, :].reshape(n, oh, q, ow, q, c).max(axis=(2, 4))
    if kind == "dense":
        flat = x.reshape(x.shape[0], -1)                   # HWC flatten order
        acc = flat @ weights[f"{name}.w"].astype(np.int64).T + weights[f"{name}.b"].astype(np.int64)
        return _requant(acc, layer, weights)
    raise ValueError(f"layer {name}: unknown type {kind!r}")


def random_model(spec: CNNSpec, seed: int = 0) -> IntModel:
    """Random weights within each layer's bit width, and shifts that keep
    activations away from constant saturation. For tests of the later stages."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for layer in spec.layers():
        if layer["type"] == "maxpool":
            continue
        name, wb = layer["name"], layer["w_bits"]
        lo, hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
        if layer["type"] == "conv2d":
            shape = (layer["out_c"], layer["kernel"], layer["kernel"], layer["in_c"])
        else:
            shape = (layer["out_features"], layer["in_features"])
        w = rng.integers(lo, hi + 1, size=shape).astype(np.int8)
        fan_in = int(np.prod(shape[1:]))
        # Typical |acc| ~ sqrt(fan_in) * max_w * max_x; shift so that lands mid-range.
        spread = np.sqrt(fan_in) * max(hi, 1) * ((1 << layer["in_bits"]) - 1)
        out_bits = layer.get("out_bits", 8)
        shift = max(0, int(np.round(np.log2(spread))) - out_bits + 1)
        weights[f"{name}.w"] = w
        weights[f"{name}.b"] = rng.integers(-(1 << max(shift, 4)), 1 << max(shift, 4),
                                            size=shape[0]).astype(np.int32)
        weights[f"{name}.shift"] = np.array(shift if layer["relu"] else 0, dtype=np.int32)
    return IntModel(spec, weights, logit_scale_log2=-12)
