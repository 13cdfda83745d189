"""Lay out the Zybo Z7-20's SD card from what make bitstream, dtbo, driver and export made.

    python -m deploy.image --bit B/waferq.bit --dtbo B/waferq.dtbo --ko D/waferq.ko \\
        --model build/<model>/export --out build/<model>/image [--fsbl F.elf --uboot U.elf]

Writes into --out:
  waferq.bit.bin          the bitstream for fpga_manager, made by bootgen (-process_bitstream bin)
  boot-files.txt          the boot (FAT) partition's files: each one, where it comes from, and
                          whether it is here; BOOT.BIN too when --fsbl and --uboot are given
  rootfs-overlay.tar.gz   unpacked over the root file system (tar -xzf ... -C /): firmware,
                          driver, overlay, the board service and its systemd units, owned by root
  rootfs-overlay.txt      that tarball's listing (mode, path)
  kernel-release          the release the module was built for (its vermagic)
Stops with exit 2 and one sentence naming every missing input.
"""
from __future__ import annotations

import argparse
import gzip
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from deploy.host_wheel import ROOT, closure

ZYBO = ROOT / "deploy" / "zybo"
# The board service and what it imports (lazy imports included); the torch-free subset.
BOARD_PACKAGES = ("protocol", "contract", "zybo_z7", "hls")
BOARD_DATA = ("contract/board.toml",)
MTIME = 1700000000          # fixed, so the same inputs give the same tarball

# (path in the root fs, source in deploy/zybo or a key of the inputs, mode)
FILES = [
    ("lib/firmware/waferq.bit.bin", "bitbin", 0o644),
    ("lib/firmware/waferq.dtbo", "dtbo", 0o644),
    ("etc/modules-load.d/waferq.conf", ZYBO / "modules-load-waferq.conf", 0o644),
    ("etc/modprobe.d/waferq.conf", ZYBO / "modprobe-waferq.conf", 0o644),
    ("etc/waferq/board.env", ZYBO / "board.env", 0o644),
    ("usr/libexec/waferq/waferq-fpga-load", ZYBO / "waferq-fpga-load", 0o755),
    ("etc/systemd/system/waferq-bitstream.service", ZYBO / "waferq-bitstream.service", 0o644),
    ("etc/systemd/system/waferq-overlay.service", ZYBO / "waferq-overlay.service", 0o644),
    ("etc/systemd/system/waferq-module.service", ZYBO / "waferq-module.service", 0o644),
    ("etc/systemd/system/waferq-board.service", ZYBO / "waferq-board.service", 0o644),
    ("usr/share/waferq/model/model.json", "model.json", 0o644),
    ("usr/share/waferq/model/weights.bin", "weights.bin", 0o644),
]
UNITS = ("waferq-bitstream.service", "waferq-overlay.service", "waferq-module.service",
         "waferq-board.service")

# The boot partition of a Zynq-7000 Linux SD card. None of these is made here: the FSBL
# and the kernel need the Xilinx tools or a kernel build (see the README's bring-up).
BOOT_FILES = [
    ("BOOT.BIN", "bootgen: the FSBL (Vitis, from waferq.xsa) + U-Boot; --fsbl/--uboot make it here"),
    ("boot.scr", "U-Boot script: load zImage and the DTB, bootz (mkimage -T script)"),
    ("zImage", "the Zynq kernel from the driver issue (multi_v7 + ARCH_ZYNQ, XILINX_DMA, "
               "FPGA_MGR_ZYNQ_FPGA, OF_OVERLAY, OF_CONFIGFS)"),
    ("system.dtb", "zynq-zybo-z7.dtb from that kernel, compiled with -@ so the overlay can apply"),
]


class Missing(Exception):
    pass


def bit_to_bin(bit: Path, out: Path) -> Path:
    """The .bit.bin fpga_manager loads, made by bootgen (header off, 32-bit words swapped)."""
    if shutil.which("bootgen") is None:
        raise Missing("bootgen is not installed (Debian package xilinx-bootgen)")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy2(bit, Path(tmp) / "waferq.bit")
        (Path(tmp) / "bit.bif").write_text("all:\n{\n    waferq.bit\n}\n")
        proc = subprocess.run(["bootgen", "-image", "bit.bif", "-arch", "zynq",
                               "-process_bitstream", "bin", "-w", "on"], cwd=tmp,
                              capture_output=True, text=True)
        made = Path(tmp) / "waferq.bit.bin"
        if proc.returncode or not made.exists():
            raise Missing(f"bootgen could not convert {bit}: "
                          + (proc.stdout + proc.stderr).strip().splitlines()[-1:][0])
        shutil.copy2(made, out)
    return out


def boot_bin(fsbl: Path, uboot: Path, out: Path) -> Path:
    bif = out.with_name("boot.bif")
    bif.write_text(f"the_ROM_image:\n{{\n    [bootloader] {fsbl.resolve()}\n    {uboot.resolve()}\n}}\n")
    proc = subprocess.run(["bootgen", "-image", str(bif), "-arch", "zynq", "-o", str(out), "-w", "on"],
                          capture_output=True, text=True)
    if proc.returncode or not out.exists():
        raise Missing(f"bootgen could not make BOOT.BIN: {(proc.stdout + proc.stderr).strip()[-300:]}")
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int, dirs: set) -> None:
    parts = name.split("/")
    for i in range(1, len(parts)):
        d = "/".join(parts[:i])
        if d not in dirs:
            dirs.add(d)
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, MTIME
            ti.uname = ti.gname = "root"
            tar.addfile(ti)
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, MTIME
    ti.uname = ti.gname = "root"
    tar.addfile(ti, io.BytesIO(data))


def board_code() -> dict[str, Path]:
    """The files of every module the board service imports, relative to the repository."""
    mods, _ = closure({"zybo_z7.service": ROOT / "zybo_z7" / "service.py"}, allowed=BOARD_PACKAGES)
    files = {str(p.relative_to(ROOT)): p for p in mods.values()}
    files.update({d: ROOT / d for d in BOARD_DATA})
    return dict(sorted(files.items()))


def rootfs_tar(inputs: dict[str, Path], out: Path) -> list[tuple[int, str]]:
    entries = [(dest, inputs[src] if isinstance(src, str) else src, mode) for dest, src, mode in FILES]
    entries.append((f"lib/modules/{inputs['kver']}/extra/waferq.ko", inputs["ko"], 0o644))
    entries += [(f"opt/waferq/board/lib/{rel}", p, 0o644) for rel, p in board_code().items()]
    entries.sort()
    buf = io.BytesIO()
    dirs: set = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for dest, src, mode in entries:
            _add(tar, dest, Path(src).read_bytes(), mode, dirs)
    # mtime 0 in the gzip header too: the same inputs give the same bytes.
    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue())
    return [(m, d) for d, _, m in entries]


def kernel_release(ko: Path) -> str:
    """The kernel release the module was built for, from its vermagic (modinfo, kmod)."""
    proc = subprocess.run(["modinfo", "-F", "vermagic", str(ko)], capture_output=True, text=True)
    if proc.returncode or not proc.stdout.strip():
        raise Missing(f"{ko} has no vermagic (modinfo): is it a kernel module?")
    return proc.stdout.split()[0]


def make(args) -> Path:
    model = Path(args.model)
    need = {"bit": (Path(args.bit), "make bitstream, which needs Vivado"),
            "dtbo": (Path(args.dtbo), "make dtbo"),
            "ko": (Path(args.ko), "make driver"),
            "model.json": (model / "model.json", "make export"),
            "weights.bin": (model / "weights.bin", "make export")}
    if args.fsbl or args.uboot:
        need["fsbl"] = (Path(args.fsbl or "(--fsbl not given)"), "the FSBL from Vitis")
        need["uboot"] = (Path(args.uboot or "(--uboot not given)"), "U-Boot for the Zybo")
    missing = [f"{p} ({how})" for p, how in need.values() if not p.is_file()]
    if missing:
        raise Missing("missing " + ", ".join(missing))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {k: p for k, (p, _) in need.items()}
    inputs["bitbin"] = bit_to_bin(inputs["bit"], out / "waferq.bit.bin")
    inputs["kver"] = kernel_release(inputs["ko"])
    listing = rootfs_tar(inputs, out / "rootfs-overlay.tar.gz")
    (out / "kernel-release").write_text(inputs["kver"] + "\n")   # make deploy runs depmod for it
    (out / "rootfs-overlay.txt").write_text("".join(f"{m:04o} /{d}\n" for m, d in listing))
    lines = ["# Boot (FAT32) partition of the Zybo Z7-20's SD card; copy these to its root.",
             "# file\tstatus\twhere it comes from"]
    for name, origin in BOOT_FILES:
        status = "missing"
        if name == "BOOT.BIN" and args.fsbl and args.uboot:
            boot_bin(inputs["fsbl"], inputs["uboot"], out / "BOOT.BIN")
            status = f"made: {out / 'BOOT.BIN'}"
        lines.append(f"{name}\t{status}\t{origin}")
    lines.append("# Root (ext4) partition: Debian armhf or the PYNQ image, then as root:")
    lines.append(f"#   tar -xzf rootfs-overlay.tar.gz -C / && depmod {inputs['kver']} && "
                 "systemctl enable " + " ".join(UNITS))
    (out / "boot-files.txt").write_text("\n".join(lines) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bit", required=True)
    ap.add_argument("--dtbo", required=True)
    ap.add_argument("--ko", required=True)
    ap.add_argument("--model", required=True, help="export folder (model.json, weights.bin)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fsbl", help="FSBL .elf: with --uboot, also make BOOT.BIN")
    ap.add_argument("--uboot", help="U-Boot .elf")
    args = ap.parse_args(argv)
    try:
        out = make(args)
    except Missing as e:
        print(f"make image: {e}.", file=sys.stderr)
        return 2
    print(f"{out}: boot-files.txt, waferq.bit.bin, rootfs-overlay.tar.gz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
