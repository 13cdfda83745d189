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


def test_import_needs_an_onnx_file_and_a_model_name():
    proc = make("import", "MODEL=x_imported")
    assert proc.returncode == 2 and "give ONNX=model.onnx and MODEL=name" in proc.stderr
    proc = make("import", "ONNX=model.onnx")
    assert proc.returncode == 2 and "give MODEL=name" in proc.stderr


@pytest.mark.slow
def test_an_imported_model_is_known_to_the_later_targets_and_never_retrained(tmp_path):
    pytest.importorskip("brevitas")
    pytest.importorskip("qonnx")
    import onnx_models as om

    model, shape = om.bnn_pynq("tfc_1w1a")
    onnx_file = tmp_path / "tfc.onnx"
    om.export(model, shape, onnx_file)
    name = "test_make_imported_tfc"
    try:
        proc = make("import", f"ONNX={onnx_file}", f"MODEL={name}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "host_pre" in proc.stdout and (ROOT / "build" / name / "export" / "model.json").exists()
        for target in ("hls-src", "estimate", "csim", "bench"):
            proc = make("-n", target, f"MODEL={name}")
            assert proc.returncode == 0 and f"build/{name}/export" in proc.stdout, target
        for target in ("train", "export"):
            proc = make(target, f"MODEL={name}")
            assert proc.returncode == 2 and "was imported from ONNX" in proc.stderr, target
            assert not (ROOT / "build" / name / "train").exists()
    finally:
        shutil.rmtree(ROOT / "build" / name, ignore_errors=True)
