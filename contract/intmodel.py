"""The integer model: what the export writes and every later stage executes.

Files in ``build/<model>/export/``:

- ``model.json``: the ``CNNSpec``, the layer list (geometry, bit widths) and
  the power-of-two scales (``*_scale_log2``), the topology hash and the
  weights checksum.
- ``weights.npz``: per layer ``<name>.w`` (int8, conv [O][KH][KW][I], dense
  [O][I] with I in HWC flatten order), ``<name>.b`` (int32 [O]) and
  ``<name>.shift`` (int32 scalar).
- ``weights.bin``: the weight blob (see ``contract.blob``), sent by the host.

Arithmetic (all integer): a conv or dense layer computes
``acc = sum(x_q * w_q) + b_q`` in int64 (the accelerator uses wide enough
ap_int), then, if it has a ReLU-quant, ``y_q = clamp(rshift_rhe(acc, shift),
0, 2**out_bits - 1)``, where ``rshift_rhe`` divides by ``2**shift`` rounding
half to even (torch.round's rule, which Brevitas uses). The last dense layer
returns ``acc`` as the logits; their real value is ``acc * 2**logit_scale_log2``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.graph import INPUT, has_section, is_threshold, n_thresholds, topology_hash, weight_shape
from contract.spec import INPUT_SCALE_LOG2, CNNSpec, input_bits, input_shape


# As in hls/templates/wq_requant.h: a right shift past 62 gives what 62 gives
# for any |acc| < 2**61, and a left shift only needs to reach past the output
# width to saturate, so both are capped; the result is the exact one, and
# int64 never wraps (a shift from a bad blob can be any int32).
MAX_RSHIFT = 62


def rshift_rhe(acc: np.ndarray, shift: int, out_bits: int = 16) -> np.ndarray:
    """acc / 2**shift rounded half to even; a negative shift multiplies.
    Exact once clamped to ``out_bits`` (signed or unsigned) for |acc| < 2**61."""
    acc = np.asarray(acc, dtype=np.int64)
    shift = int(shift)
    if shift <= 0:
        big = np.int64(1) << (out_bits + 1)    # saturates the same, cannot wrap
        return np.clip(acc, -big, big) << min(-shift, out_bits + 1)
    shift = min(shift, MAX_RSHIFT)
    half = np.int64(1) << (shift - 1)
    odd = (acc >> shift) & 1
    return (acc + half - 1 + odd) >> shift


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
        return input_shape(self.spec)

    # --- files -----------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        from contract import blob

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        words = blob.pack(self)
        meta = {
            "format_version": 1,
            "spec": self.spec.to_dict(),
            "layers": self.layers,
            "input": {"bits": input_bits(self.spec), "scale_log2": INPUT_SCALE_LOG2},
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
        from contract import export_dir

        ex = export_dir.read(folder)
        with np.load(ex.folder / export_dir.WEIGHTS_NPZ) as z:
            weights = {k: z[k] for k in z.files}
        model = cls(ex.spec(), weights, ex.logit_scale_log2)
        if model.topology_hash != ex.topology_hash:
            raise export_dir.ExportError(f"{ex.path}: topology hash does not match its layer list")
        return model

    # --- execution -------------------------------------------------------
    def forward(self, images: np.ndarray) -> np.ndarray:
        """uint8 images [N][H][W][C] (or [N][H][W]) -> int64 logits [N][n_classes]."""
        out = self.run(images)[self.layers[-1]["name"]]
        return out.reshape(out.shape[0], -1)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's integer output [N][H][W][C] by name (and "input")."""
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"input shape {x.shape[1:]} != model input {self.input_shape}")
        top = (1 << input_bits(self.spec)) - 1
        if x.size and (x.min() < 0 or x.max() > top):
            raise ValueError(f"input codes {x.min()}..{x.max()} outside the model's 0..{top}")
        acts = {INPUT: x.astype(np.int64)}
        for layer in self.layers:
            acts[layer["name"]] = _run_layer(layer, [acts[i] for i in layer["inputs"]], self.weights)
        return acts

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = self.forward(images)
        return logits.argmax(axis=1), logits


def _requant(acc: np.ndarray, layer: dict, weights: dict) -> np.ndarray:
    if not layer["requant"]:
        return acc
    if is_threshold(layer):
        # FINN MultiThreshold: count the thresholds each channel's acc reaches.
        thr = weights[f"{layer['name']}.thr"].astype(np.int64)       # [C][n]
        return (acc[..., None] >= thr).sum(axis=-1, dtype=np.int64)
    y = rshift_rhe(acc, int(weights[f"{layer['name']}.shift"]), layer["out_bits"])
    return _clamp(y, layer["out_bits"], layer["relu"])


def _clamp(y: np.ndarray, bits: int, unsigned: bool) -> np.ndarray:
    if unsigned:
        return np.clip(y, 0, (1 << bits) - 1)
    return np.clip(y, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def _conv(layer: dict, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    k, p, s, g = layer["kernel"], layer["pad"], layer["stride"], layer["groups"]
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    n, _, _, c = xp.shape
    oh, ow = layer["out_h"], layer["out_w"]
    cols = np.empty((n, oh, ow, k, k, c), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            cols[:, :, :, ky, kx, :] = xp[:, ky:ky + s * (oh - 1) + 1:s, kx:kx + s * (ow - 1) + 1:s, :]
    if g == 1:
        return cols.reshape(n, oh, ow, -1) @ w.reshape(w.shape[0], -1).T
    # Depthwise: output channel c sees only input channel c.
    return np.einsum("nhwyxc,cyx->nhwc", cols, w[..., 0])


def _run_layer(layer: dict, xs: list[np.ndarray], weights: dict) -> np.ndarray:
    name, kind, x = layer["name"], layer["type"], xs[0]
    if kind == "conv2d":
        acc = _conv(layer, x, weights[f"{name}.w"].astype(np.int64))
        return _requant(acc + weights[f"{name}.b"].astype(np.int64), layer, weights)
    if kind == "dense":
        flat = x.reshape(x.shape[0], -1)                   # HWC flatten order
        acc = flat @ weights[f"{name}.w"].astype(np.int64).T + weights[f"{name}.b"].astype(np.int64)
        return _requant(acc, layer, weights)
    if kind == "maxpool":
        q, s = layer["pool"], layer["stride"]
        oh, ow = layer["out_h"], layer["out_w"]
        windows = [x[:, dy:dy + s * (oh - 1) + 1:s, dx:dx + s * (ow - 1) + 1:s, :]
                   for dy in range(q) for dx in range(q)]
        return np.max(windows, axis=0)
    if kind == "gap":
        return _requant(x.sum(axis=(1, 2), keepdims=True), layer, weights)
    if kind == "add":
        ab = layer["align_bits"]
        a = _clamp(rshift_rhe(x, int(weights[f"{name}.shift_a"]), ab), ab, False)
        b = _clamp(rshift_rhe(xs[1], int(weights[f"{name}.shift_b"]), ab), ab, False)
        return _requant(a + b, layer, weights)
    if kind == "quant":
        return _requant(x, layer, weights)
    if kind == "upsample":
        return x.repeat(2, axis=1).repeat(2, axis=2)
    raise ValueError(f"layer {name}: unknown type {kind!r}")


def random_model(spec, seed: int = 0) -> IntModel:
    """Random weights within each layer's bit width, and shifts that keep
    activations away from constant saturation. For tests of the later stages."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for layer in spec.layers():
        if not has_section(layer):
            continue
        name, in_max = layer["name"], (1 << layer["in_bits"]) - 1
        if layer["type"] in ("conv2d", "dense"):
            wb = layer["w_bits"]
            lo, hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
            shape = weight_shape(layer)
            if wb == 1:     # bipolar
                weights[f"{name}.w"] = (2 * rng.integers(0, 2, size=shape) - 1).astype(np.int8)
                hi = 1
            else:
                weights[f"{name}.w"] = rng.integers(lo, hi + 1, size=shape).astype(np.int8)
            fan_in = int(np.prod(shape[1:]))
            # Typical |acc| ~ sqrt(fan_in) * max_w * max_x; shift so that lands mid-range.
            spread = np.sqrt(fan_in) * max(hi, 1) * in_max
            weights[f"{name}.b"] = rng.integers(-int(spread) // 4 - 1, int(spread) // 4 + 1,
                                                size=shape[0]).astype(np.int32)
            if is_threshold(layer):
                # Ascending per channel, spread over the typical accumulator range.
                thr = rng.integers(-int(spread), int(spread) + 1, size=(shape[0], n_thresholds(layer)))
                weights[f"{name}.thr"] = np.sort(thr, axis=1).astype(np.int32)
                continue
        elif layer["type"] == "gap":
            spread = layer["in_h"] * layer["in_w"] * in_max / 2
        elif layer["type"] == "add":
            # Align both branches near the shared width, then the sum to the output.
            for key, bits in (("shift_a", layer["in_bits"]), ("shift_b", layer["in_bits_b"])):
                weights[f"{name}.{key}"] = np.array(bits - layer["align_bits"] + 1, dtype=np.int32)
            spread = 1 << layer["align_bits"]
        else:
            spread = 2 * in_max
        shift = int(np.round(np.log2(max(spread, 1)))) - layer["out_bits"] + 1
        weights[f"{name}.shift"] = np.array(shift if layer["requant"] else 0, dtype=np.int32)
    return IntModel(spec, weights, logit_scale_log2=-12)
