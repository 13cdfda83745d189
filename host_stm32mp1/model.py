"""The model a host run classifies with: an export folder read once
(``contract.export_dir``), the rule that turns the board's integer logits
into confidence and a review reason, and the settings digest the store keys
results by.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import export_dir
from contract import reject as R


class ModelError(ValueError):
    """The --model folder is not a usable export (one sentence, exit 2)."""


@dataclass
class Model:
    folder: Path
    meta: dict
    classes: list
    size: int
    channels: int

    @classmethod
    def load(cls, folder, size: int | None = None) -> "Model":
        try:
            ex = export_dir.read(folder)
            model = cls(ex.folder, ex.meta, list(ex.classes), size or ex.in_size, ex.in_channels)
            ex.weights_checksum, ex.topology_hash, ex.views
            export_dir.read(folder, need_weights=True)
        except export_dir.ExportError as e:
            raise ModelError(str(e)) from None
        return model

    @property
    def export(self) -> export_dir.Export:
        return export_dir.Export(self.folder, self.meta)

    @property
    def checksum(self) -> int:
        return self.export.weights_checksum

    @property
    def topology_hash(self) -> int:
        return self.export.topology_hash

    @property
    def logit_scale(self) -> float:
        return 2.0 ** self.export.logit_scale_log2

    @property
    def views(self) -> int:
        """Images a map is sent as (``contract.views``): 1, or its 8 turns and flips."""
        return self.export.views

    @property
    def reject(self) -> dict | None:
        """The reject rule training calibrated (``quant.metrics.calibrate_reject``), if any."""
        return self.export.reject

    def judge_batch(self, logits, images=None) -> tuple[np.ndarray, list]:
        """``judge`` for a batch in one numpy pass: (confidence [n], reasons:
        one None or text a map, all None without a rule). With views the
        logits are the sum over the views; the rule sees their mean."""
        z = np.asarray(logits, dtype=np.float64) * (self.logit_scale / self.views)   # [n][n_classes]
        if not len(z):
            return np.zeros(0), []
        rule = self.reject
        conf = R.softmax(z, rule["temperature"] if rule else 1.0).max(axis=1)
        if rule is None:
            return conf, [None] * len(z)
        return conf, R.reject_reasons(z, rule, None if images is None else np.asarray(images))

    def judge(self, logits, image=None) -> tuple[float, bool | None, str | None]:
        """(confidence, rejected, reason) of one map from the board's integer
        logits, whose real value is ``acc * 2**logit_scale_log2``. Confidence is
        the softmax maximum (at the rule's temperature when there is a rule);
        with a rule, ``reject.reject_reasons`` decides, ``image`` (the uint8
        model input sent) enabling its not-a-wafer-map tests."""
        z = np.asarray(logits, dtype=np.float64)[None] * (self.logit_scale / self.views)
        rule = self.reject
        conf = float(R.softmax(z, rule["temperature"] if rule else 1.0).max())
        if rule is None:
            return conf, None, None
        why = R.reject_reasons(z, rule, None if image is None else np.asarray(image)[None])[0]
        return conf, why is not None, why


def settings_key(model: Model, **reader_options) -> tuple[str, str]:
    """(digest, description) of everything besides the file that decides an
    answer: the store keys results by it, so other settings classify again."""
    desc = dict(topology_hash=model.topology_hash, weights_checksum=model.checksum,
                in_size=model.size, reject=model.reject, views=model.views,
                **{k: (sorted(v) if isinstance(v, (set, frozenset)) else v)
                   for k, v in sorted(reader_options.items())})
    text = json.dumps(desc, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], text
