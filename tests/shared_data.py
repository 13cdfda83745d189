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


def run_with_config(run: Path, dest: Path, **changes) -> Path:
    """A copy of the finished quant.train run ``run`` in ``dest`` (checkpoint
    and metrics.json) whose recorded options differ by ``changes``: a run on
    other rows, for the reports that must refuse it."""
    import json

    dest.mkdir(exist_ok=True)
    m = json.loads((run / "metrics.json").read_text())
    m["config"].update(changes)
    (dest / "metrics.json").write_text(json.dumps(m))
    (dest / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    return dest


def tiny_run(out: Path, seed: int, val_fold: int = 0) -> Path:
    """A one-epoch quant.train run of the real numpy-2 sample at 16x16, eight
    views, split seed 0, validating on ``val_fold``: a finished run for the
    reports to read, in seconds."""
    from quant import train

    train.run(train.parse_args(["--data", str(require(REAL_NP2)), "--size", "16", "--fp-epochs", "1",
                                "--qat-epochs", "1", "--views", "8", "--seed", str(seed), "--split-seed", "0",
                                "--val-fold", str(val_fold), "--out", str(out)]))
    return out
