"""`make` refuses a MODEL it does not know instead of training the default CNN
under that name, and a MODEL named after a config trains with that config."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")


def make(*args):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("target", ["train", "export", "hls-src", "estimate", "csim", "bitstream",
                                    "dtbo", "flash", "bench", "image", "deploy"])
def test_unknown_model_refused_by_every_model_target(target):
    proc = make(target, "MODEL=lfc_1w1a")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown MODEL=lfc_1w1a" in proc.stderr and "vgg_s_4w4a" in proc.stderr
    assert not (ROOT / "build" / "lfc_1w1a").exists()


def test_model_named_after_a_config_trains_with_it():
    out = make("-n", "train", "MODEL=vgg_s_4w4a").stdout
    assert "--config quant/configs/vgg_s_4w4a.json" in " ".join(out.split())
    # the demo's default keeps its knobs
    out = " ".join(make("-n", "train").stdout.split())
    assert "--w-bits 4 --a-bits 4" in out and "--config" not in out
