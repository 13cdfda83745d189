"""deploy/armhf/root.sh against a stand-in apt-get that fails the way a Debian
mirror mid-sync does: ``apt-get update`` exits 100 when one index's size
disagrees with its Release file, and the other indexes are still usable."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy/armhf/root.sh"

# TEST-ONLY stand-in for apt-get: logs each subcommand; "download" writes one
# small real .deb a package (dpkg-deb --build), so root.sh's unpacking runs.
FAKE_APT = r"""#!/bin/sh
cmd=""
pkgs=""
for a in "$@"; do
	case "$cmd" in download) pkgs="$pkgs $a"; continue;; esac
	case "$a" in update|download) cmd=$a;; esac
done
echo "$cmd" >>"$FAKE_APT_LOG"
case "$cmd" in
update)
	echo "E: Failed to fetch .../binary-armhf/Packages.xz  File has unexpected size. Mirror sync in progress?" >&2
	exit "$FAKE_UPDATE_RC";;
download)
	[ "$FAKE_DOWNLOAD_RC" = 0 ] || { echo "E: Unable to locate package" >&2; exit "$FAKE_DOWNLOAD_RC"; }
	for p in $pkgs; do
		arch=armhf
		case " $FAKE_ALL " in *" $p "*) arch=all;; esac
		t=$(mktemp -d)
		mkdir -p "$t/DEBIAN" "$t/usr/share/doc/$p" "$t/usr/lib/arm-linux-gnueabihf" "$t/usr/bin"
		printf 'Package: %s\nVersion: 1.0\nArchitecture: %s\nMaintainer: test\nDescription: stand-in\n' \
			"$p" "$arch" >"$t/DEBIAN/control"
		if [ "$p" = python3.11-minimal ]; then printf '#!/bin/sh\n' >"$t/usr/bin/python3.11"; chmod +x "$t/usr/bin/python3.11"; fi
		dpkg-deb --build "$t" "${p}_1.0_${arch}.deb" >/dev/null
		rm -rf "$t"
	done;;
esac
"""


def _all_packages() -> str:
    m = re.search(r'ALL_PKGS="([^"]*)"', SCRIPT.read_text())
    return " ".join(m.group(1).split())


def _run(tmp_path, update_rc, download_rc):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text(FAKE_APT)
    fake.chmod(0o755)
    log = tmp_path / "apt.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_APT_LOG": str(log),
           "FAKE_UPDATE_RC": str(update_rc), "FAKE_DOWNLOAD_RC": str(download_rc),
           "FAKE_ALL": _all_packages(), "ROOT_SH_RETRY_SECONDS": "0"}
    proc = subprocess.run(["sh", str(SCRIPT), str(tmp_path / "armhf")], env=env, capture_output=True,
                          text=True, timeout=300)
    return proc, (log.read_text().split() if log.exists() else [])


pytestmark = pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v dpkg-deb"]).returncode != 0,
                                reason="dpkg-deb missing (Debian dpkg)")


def test_a_clean_update_runs_once(tmp_path):
    proc, calls = _run(tmp_path, 0, 0)
    assert proc.returncode == 0, proc.stderr
    assert calls == ["update", "download"]
    assert (tmp_path / "armhf/root/.complete").exists()
    assert os.access(tmp_path / "armhf/root/usr/bin/python3", os.X_OK)


def test_an_index_that_fails_to_update_does_not_stop_the_root(tmp_path):
    proc, calls = _run(tmp_path, 100, 0)
    assert proc.returncode == 0, proc.stderr
    assert calls == ["update", "update", "download"]
    assert "apt-get update failed 2 times (mirror sync?)" in proc.stderr
    assert (tmp_path / "armhf/root/.complete").exists()
    assert proc.stdout.strip() == str(tmp_path / "armhf/root")


def test_a_package_in_no_index_fails_the_root(tmp_path):
    proc, calls = _run(tmp_path, 100, 100)
    assert proc.returncode != 0
    assert calls == ["update", "update", "download"]
    assert "Unable to locate package" in proc.stderr
    assert not (tmp_path / "armhf/root").exists()


def test_cached_debs_need_no_apt(tmp_path):
    proc, _ = _run(tmp_path, 0, 0)
    assert proc.returncode == 0
    (tmp_path / "apt.log").unlink()
    shutil.rmtree(tmp_path / "bin")
    shutil.rmtree(tmp_path / "armhf/root")
    proc, calls = _run(tmp_path, 100, 100)
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    assert (tmp_path / "armhf/root/.complete").exists()
