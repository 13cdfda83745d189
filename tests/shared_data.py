"""The real WM-811K files in ../shared/data (beside the repository root).

Tests that read them skip with the missing path when a checkout has no
shared folder; CI has it, so nothing is skipped there.
"""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_TRAIN = SHARED_DATA / "wm811k-real-train.pkl"
REAL_NP2 = SHARED_DATA / "wm811k-real-sample-numpy2.pkl"


def require(path: Path) -> Path:
    """``path``, or skip the calling test when it is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path
