"""make test-armhf inside the suite: the host wheel on a Debian armhf root under qemu-arm."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("qemu-arm") is None, reason="qemu-arm missing (Debian qemu-user)")
@pytest.mark.skipif(shutil.which("apt-get") is None and not (ROOT / "build/armhf/root/.complete").exists(),
                    reason="no apt-get to download the armhf packages")
def test_host_runs_on_armhf():
    # Cached under build/armhf (debs, root); the wheel and the venv in the root are rebuilt.
    proc = subprocess.run([sys.executable, str(ROOT / "tests/armhf/run.py"), "--work",
                           str(ROOT / "build/armhf")], cwd=ROOT, capture_output=True, text=True,
                          timeout=1500)
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].endswith(" passed, 0 failed"), proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0
    assert int(lines[-1].split()[0]) >= 8
