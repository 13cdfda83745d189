"""make image from stand-in inputs: bootgen's .bit.bin, the boot file list, the root-fs tarball."""
import configparser
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from deploy import image

ROOT = Path(__file__).resolve().parents[1]
needs_bootgen = pytest.mark.skipif(shutil.which("bootgen") is None, reason="bootgen missing (xilinx-bootgen)")
needs_armgcc = pytest.mark.skipif(shutil.which("arm-linux-gnueabihf-gcc") is None,
                                  reason="arm-linux-gnueabihf-gcc missing")
KVER = "6.6.40-waferq"


def fake_bit(path: Path) -> bytes:
    """A Xilinx .bit: the fixed preamble, fields a-d, then e = the configuration words.
    Stand-in data (a real one comes from Vivado), with the real sync word AA995566."""
    def field(key, text):
        b = text.encode() + b"\0"
        return key + struct.pack(">H", len(b)) + b
    words = bytes.fromhex("ffffffff" * 8 + "000000bb11220044" + "ffffffff" * 2 + "aa99556620000000")
    body = words + np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    head = (struct.pack(">H", 9) + bytes.fromhex("0ff00ff00ff00ff000") + struct.pack(">H", 1)
            + field(b"a", "waferq_wrapper;UserID=0XFFFFFFFF;Version=2023.2") + field(b"b", "7z020clg400")
            + field(b"c", "2026/12/02") + field(b"d", "06:00:00") + b"e" + struct.pack(">I", len(body)))
    path.write_bytes(head + body)
    return body


def fake_ko(path: Path):
    """An ARM object with a .modinfo section, which is where modinfo reads vermagic."""
    src = path.with_suffix(".c")
    src.write_text(f'const char v[] __attribute__((section(".modinfo"), used)) = '
                   f'"vermagic={KVER} SMP mod_unload ARMv7 p2v8 ";\n')
    subprocess.run(["arm-linux-gnueabihf-gcc", "-c", str(src), "-o", str(path)], check=True)


@pytest.fixture
def inputs(tmp_path):
    b = tmp_path / "bitstream"
    b.mkdir()
    body = fake_bit(b / "waferq.bit")
    (b / "waferq.dtbo").write_bytes(b"\xd0\x0d\xfe\xed stand-in overlay")
    fake_ko(tmp_path / "waferq.ko")
    m = tmp_path / "export"
    m.mkdir()
    (m / "model.json").write_text("{}")
    (m / "weights.bin").write_bytes(b"\1\2\3\4")
    args = ["--bit", str(b / "waferq.bit"), "--dtbo", str(b / "waferq.dtbo"),
            "--ko", str(tmp_path / "waferq.ko"), "--model", str(m), "--out", str(tmp_path / "image")]
    return args, body, tmp_path


def run_image(args):
    return subprocess.run([sys.executable, "-m", "deploy.image", *args], cwd=ROOT,
                          capture_output=True, text=True)


@needs_bootgen
@needs_armgcc
def test_image_layout_contents_and_modes(inputs):
    args, body, tmp = inputs
    proc = run_image(args)
    assert proc.returncode == 0, proc.stderr
    out = tmp / "image"
    # bootgen's .bit.bin: the header gone, each 32-bit word byte-swapped (checked here
    # independently), padded with type-1 NOOPs (0x20000000).
    bin_ = (out / "waferq.bit.bin").read_bytes()
    swapped = b"".join(body[i:i + 4][::-1] for i in range(0, len(body), 4))
    assert bin_[:len(body)] == swapped
    assert set(bin_[len(body):][i:i + 4] for i in range(0, len(bin_) - len(body), 4)) <= {b"\0\0\0\x20"}

    with tarfile.open(out / "rootfs-overlay.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        data = {n: tar.extractfile(m).read() for n, m in members.items() if m.isfile()}
    modes = {n: m.mode for n, m in members.items()}
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "root" for m in members.values())
    assert not any(n.startswith("/") or ".." in n.split("/") for n in members)
    assert data["lib/firmware/waferq.bit.bin"] == bin_
    assert data["lib/firmware/waferq.dtbo"].startswith(b"\xd0\x0d\xfe\xed")
    assert data[f"lib/modules/{KVER}/extra/waferq.ko"] == (tmp / "waferq.ko").read_bytes()
    assert modes["usr/libexec/waferq/waferq-fpga-load"] == 0o755
    for unit in image.UNITS:
        assert modes[f"etc/systemd/system/{unit}"] == 0o644
    assert modes["etc/modules-load.d/waferq.conf"] == 0o644
    assert all(m.mode == 0o755 for m in members.values() if m.isdir())
    assert all(modes[n] == 0o644 for n in data if n != "usr/libexec/waferq/waferq-fpga-load")
    # The board service's code: every module it imports, and nothing that needs torch.
    code = {n for n in data if n.startswith("opt/waferq/board/lib/")}
    assert "opt/waferq/board/lib/zybo_z7/service.py" in code
    assert "opt/waferq/board/lib/protocol/wire.py" in code
    assert not any("/train" in n or "/export.py" in n for n in code)
    assert not any(b"wire.key" in n.encode() for n in data if "key" in n)   # no secret in the image
    listing = (out / "rootfs-overlay.txt").read_text().splitlines()
    assert "0755 /usr/libexec/waferq/waferq-fpga-load" in listing
    boot = (out / "boot-files.txt").read_text()
    for name in ("BOOT.BIN", "boot.scr", "zImage", "system.dtb"):
        assert f"\n{name}\tmissing\t" in boot
    assert f"depmod {KVER}" in boot

    # The board service runs from the unpacked tree with nothing of this checkout on the path.
    root = tmp / "rootfs"
    with tarfile.open(out / "rootfs-overlay.tar.gz") as tar:
        tar.extractall(root, filter="data")
    proc = subprocess.run([sys.executable, "-c", "import zybo_z7.service, sys; "
                           "assert all('/rootfs/' in (m.__file__ or '/rootfs/') for n, m in sys.modules.items()"
                           " if n.split('.')[0] in ('zybo_z7', 'protocol', 'contract', 'hls')); "
                           "assert 'torch' not in sys.modules; print('ok')"],
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(root / "opt/waferq/board/lib")},
                          cwd=tmp, capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr

    # Same inputs, same bytes.
    first = (out / "rootfs-overlay.tar.gz").read_bytes()
    assert run_image(args).returncode == 0
    assert (out / "rootfs-overlay.tar.gz").read_bytes() == first


def test_image_names_every_missing_input(tmp_path):
    proc = run_image(["--bit", str(tmp_path / "b/waferq.bit"), "--dtbo", str(tmp_path / "b/waferq.dtbo"),
                      "--ko", str(tmp_path / "waferq.ko"), "--model", str(tmp_path / "export"),
                      "--out", str(tmp_path / "image")])
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("make image: missing ")
    for what in ("waferq.bit (make bitstream, which needs Vivado)", "waferq.dtbo (make dtbo)",
                 "waferq.ko (make driver)", "model.json (make export)"):
        assert what in err
    assert not (tmp_path / "image").exists()


@needs_bootgen
@needs_armgcc
def test_makefile_image_target(inputs):
    args, _, tmp = inputs
    a = dict(zip(args[::2], args[1::2]))
    stamp = tmp / "installed"        # stands for .venv/.installed: no `make install` from a test
    stamp.touch()
    proc = subprocess.run(["make", "-s", "image", f"IMAGE_BIT={a['--bit']}", f"IMAGE_DTBO={a['--dtbo']}",
                           f"IMAGE_KO={a['--ko']}", f"IMAGE_MODEL={a['--model']}", f"IMAGE_OUT={a['--out']}",
                           f"STAMP={stamp}", f"PY={sys.executable}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp / "image" / "rootfs-overlay.tar.gz").exists()


def units():
    out = {}
    for f in (ROOT / "deploy/zybo").glob("*.service"):
        c = configparser.ConfigParser(strict=False, interpolation=None)
        c.optionxform = str
        c.read(f)
        out[f.name] = c
    return out


def test_zybo_units_load_in_a_fixed_order():
    u = units()
    chain = list(image.UNITS)
    assert set(chain) == set(u)
    for before, after in zip(chain, chain[1:]):
        # Requires: a failed step stops the ones after it; After: they never start first.
        assert before in u[after]["Unit"]["Requires"].split()
        assert before in u[after]["Unit"]["After"].split()
    assert "systemd-modules-load.service" in u[chain[0]]["Unit"]["After"].split()
    assert u["waferq-module.service"]["Service"]["ExecStart"] == "/sbin/modprobe waferq"
    mods = (ROOT / "deploy/zybo/modules-load-waferq.conf").read_text().split("\n")
    assert "waferq" not in [m.strip() for m in mods]   # loaded by its unit, after the overlay


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not Path("/lib/systemd/system").is_dir(),
                    reason="systemd-analyze missing")
def test_units_pass_systemd_analyze_verify(tmp_path):
    """systemd's own parser on the unit files, in a root holding what they name."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    for f in list((ROOT / "deploy/zybo").glob("*.service")) + [ROOT / "deploy/host/waferq-host.service"]:
        shutil.copy(f, root / "etc/systemd/system" / f.name)
    for exe in ("usr/libexec/waferq/waferq-fpga-load", "sbin/modprobe", "usr/bin/python3",
                "opt/waferq/host/bin/python"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)
    # The targets and services they order against (sysinit.target, network-online.target ...).
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    names = [str(root / "etc/systemd/system" / f.name) for f in (root / "etc/systemd/system").iterdir()]
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", *names],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def fake_sysfs(tmp_path, state="operating"):
    mgr = tmp_path / "sys/class/fpga_manager/fpga0"
    mgr.mkdir(parents=True)
    for f, v in (("flags", ""), ("firmware", ""), ("state", state + "\n")):
        (mgr / f).write_text(v)
    fw = tmp_path / "firmware"
    fw.mkdir()
    (fw / "waferq.bit.bin").write_bytes(b"\0" * 16)
    return mgr, dict(os.environ, WQ_SYSFS=str(tmp_path / "sys"), WQ_FIRMWARE_DIR=str(fw))


LOADER = str(ROOT / "deploy/zybo/waferq-fpga-load")


def test_fpga_load_bitstream_writes_flags_then_firmware(tmp_path):
    mgr, env = fake_sysfs(tmp_path)
    proc = subprocess.run([LOADER, "bitstream", "waferq.bit.bin"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (mgr / "flags").read_text() == "0\n" and (mgr / "firmware").read_text() == "waferq.bit.bin\n"


@pytest.mark.parametrize("setup,message", [
    ("state", "reports 'write error' after loading waferq.bit.bin"),
    ("no-manager", "no FPGA manager at"),
    ("no-firmware-attr", "no firmware attribute"),
    ("no-file", "waferq.bit.bin is missing"),
])
def test_fpga_load_bitstream_failures_are_one_sentence(tmp_path, setup, message):
    mgr, env = fake_sysfs(tmp_path, "write error" if setup == "state" else "operating")
    if setup == "no-manager":
        shutil.rmtree(mgr)
    elif setup == "no-firmware-attr":
        (mgr / "firmware").unlink()
    elif setup == "no-file":
        (Path(env["WQ_FIRMWARE_DIR"]) / "waferq.bit.bin").unlink()
    proc = subprocess.run([LOADER, "bitstream", "waferq.bit.bin"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_fpga_load_overlay_needs_configfs_and_checks_status(tmp_path):
    _, env = fake_sysfs(tmp_path)
    dtbo = tmp_path / "waferq.dtbo"
    dtbo.write_bytes(b"\xd0\x0d\xfe\xed")
    proc = subprocess.run([LOADER, "overlay", str(dtbo)], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "mount configfs" in proc.stderr
    # A plain folder is no configfs: no status file appears, so the overlay is not applied.
    (tmp_path / "sys/kernel/config/device-tree/overlays").mkdir(parents=True)
    proc = subprocess.run([LOADER, "overlay", str(dtbo)], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "not applied (status: none)" in proc.stderr
