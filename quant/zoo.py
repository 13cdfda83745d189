"""Model families beyond the slice's wafer-map CNN (``quant.spec.CNNSpec``).

Each family is a frozen dataclass with the same face as ``CNNSpec``:
``name``, ``family``, ``in_size``, ``in_channels``, ``classes``,
``n_classes``, ``to_dict()``, ``from_dict()`` and ``layers()``.
"""
from __future__ import annotations

FAMILIES: dict[str, type] = {}
