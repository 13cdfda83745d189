"""The one reader of an export folder (``make export``'s ``build/<model>/export``).

    ex = export_dir.read(folder)       # model.json parsed; errors are ExportError
    ex.topology_hash, ex.weights_checksum, ex.classes, ex.spec(), ex.weights_bin()

The folder holds ``model.json`` (written by ``IntModel.save``; ``quant.export``
adds the calibrated ``reject`` rule and ``views``), ``weights.npz`` and ``weights.bin`` (the
blob). hls/, zybo_z7/, the host and the tests read it here instead of parsing
``model.json`` by hand. A field is checked when it is read, so a tool that needs
only the topology hash takes a folder whose other fields it never looks at; a
missing or malformed field is an ``ExportError`` naming the file and the field.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from contract import views

MODEL_JSON = "model.json"
WEIGHTS_BIN = "weights.bin"
WEIGHTS_NPZ = "weights.npz"


class ExportError(ValueError):
    """The folder is not a (complete, readable) waferq export."""


@dataclass(frozen=True)
class Export:
    folder: Path
    meta: dict          # model.json as written

    @property
    def path(self) -> Path:
        return self.folder / MODEL_JSON

    def _field(self, *keys, kind=None):
        v = self.meta
        try:
            for k in keys:
                v = v[k]
            return kind(v) if kind is not None else v
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{self.path} is not a waferq model description (missing or bad "
                              f"{'.'.join(keys)!r}: {type(e).__name__})") from None

    @property
    def spec_dict(self) -> dict:
        d = self._field("spec")
        if not isinstance(d, dict):
            raise ExportError(f"{self.path}: 'spec' is not an object")
        return d

    def spec(self):
        """The model spec (``CNNSpec`` or a zoo family's)."""
        from contract.spec import spec_from_dict

        try:
            return spec_from_dict(self.spec_dict)
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{self.path}: bad 'spec' ({type(e).__name__}: {e})") from None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self._field("spec", "classes", kind=list))

    @property
    def in_size(self) -> int:
        return self._field("spec", "in_size", kind=int)

    @property
    def in_channels(self) -> int:
        return int(self.spec_dict.get("in_channels", 1))

    @property
    def layers(self) -> list[dict]:
        return self._field("layers", kind=list)

    @property
    def topology_hash(self) -> int:
        return self._field("topology_hash", kind=int)

    @property
    def weights_checksum(self) -> int:
        return self._field("weights_checksum", kind=int)

    @property
    def blob_words(self) -> int:
        return self._field("blob_words", kind=int)

    @property
    def logit_scale_log2(self) -> int:
        return int(self.meta.get("logit_scale_log2", 0))

    @property
    def reject(self) -> dict | None:
        """The reject rule training calibrated (``quant.metrics.calibrate_reject``), if any."""
        r = self.meta.get("reject")
        if isinstance(r, dict) and "temperature" in r and "threshold" in r:
            return r
        return None

    @property
    def views(self) -> int:
        """Views a map is classified as (``contract.views``): 1, or 8 when
        training evaluated the model on the eight turns and flips."""
        n = self.meta.get("views", 1)
        try:
            return views.check(n)
        except ValueError as e:
            raise ExportError(f"{self.path}: {e}") from None

    def check_topology(self) -> "Export":
        """Raise ExportError unless topology_hash is the hash of the layer list."""
        from contract.graph import topology_hash

        if topology_hash(self.layers) != self.topology_hash:
            raise ExportError(f"{self.path}: topology hash does not match its layer list")
        return self

    def weights_bin(self) -> bytes:
        try:
            return (self.folder / WEIGHTS_BIN).read_bytes()
        except FileNotFoundError:
            raise ExportError(f"{self.folder} has no {WEIGHTS_BIN}: the export is incomplete") from None

    def with_reject(self, rule: dict | None, n_views: int = 1) -> "Export":
        """Write the calibrated reject rule and the views training judged the
        model with into model.json (quant.export's last step)."""
        meta = dict(self.meta, views=views.check(n_views))
        if rule is not None:
            meta["reject"] = rule
        self.path.write_text(json.dumps(meta, indent=1))
        return Export(self.folder, meta)


def read(folder: str | Path, need_weights: bool = False) -> Export:
    """Parse ``folder/model.json``; with need_weights also require ``weights.bin``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"model folder {folder} does not exist (expected an export folder "
                          "with model.json and weights.bin)" if not folder.exists() else
                          f"--model {folder} is a file: give the export folder that holds it")
    path = folder / MODEL_JSON
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{folder} has no model.json: not a model export folder "
                          "(make export writes one)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(meta, dict):
        raise ExportError(f"{path} is not a waferq model description (not a JSON object)")
    if need_weights and not (folder / WEIGHTS_BIN).is_file():
        raise ExportError(f"{folder} has no {WEIGHTS_BIN}: the export is incomplete")
    return Export(folder, meta)
