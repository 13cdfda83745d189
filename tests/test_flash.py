"""make flash and make bitstream: each failure is one sentence on stderr and exit status 2."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract.intmodel import random_model
from contract.spec import CNNSpec

ROOT = Path(__file__).resolve().parent.parent


def _run(module, args, path_dirs):
    # only the given folders on PATH: the machine's own tools must not leak in
    env = dict(os.environ, PATH=os.pathsep.join(str(p) for p in path_dirs))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def _tool(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    p = folder / name
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)


def _one_sentence(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("."), proc.stderr
    for w in words:
        assert w in lines[0]


@pytest.fixture
def bit(tmp_path):
    p = tmp_path / "waferq.bit"
    p.write_bytes(b"bit")
    return p


def test_flash_without_bitstream(tmp_path):
    proc = _run("zybo_z7.flash", ["--bit", str(tmp_path / "none.bit")], [tmp_path])
    _one_sentence(proc, "no bitstream", "make bitstream")


def test_flash_without_openfpgaloader(tmp_path, bit):
    proc = _run("zybo_z7.flash", ["--bit", str(bit)], [tmp_path / "empty"])
    _one_sentence(proc, "openFPGALoader is not on PATH", "apt-get install openfpgaloader")


def test_flash_without_cable(tmp_path, bit):
    _tool(tmp_path / "bin", "openFPGALoader",
          'echo "unable to open ftdi device: -3 (device not found)" >&2; exit 1')
    proc = _run("zybo_z7.flash", ["--bit", str(bit)], [tmp_path / "bin"])
    _one_sentence(proc, "no JTAG cable")


def test_flash_programs_the_board_by_name(tmp_path, bit):
    log = tmp_path / "args.log"
    _tool(tmp_path / "bin", "openFPGALoader", f'echo "$@" >> {log}')
    proc = _run("zybo_z7.flash", ["--bit", str(bit)], [tmp_path / "bin"])
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == ["-b zybo_z7_20 --detect", f"-b zybo_z7_20 {bit}"]


def test_bitstream_without_vivado(tmp_path):
    proc = _run("zybo_z7.bitstream", ["--model", str(tmp_path)], [tmp_path / "empty"])
    _one_sentence(proc, "vivado is not on PATH")


def test_bitstream_without_vitis_hls(tmp_path):
    _tool(tmp_path / "bin", "vivado", "exit 0")
    proc = _run("zybo_z7.bitstream", ["--model", str(tmp_path)], [tmp_path / "bin"])
    _one_sentence(proc, "neither vitis_hls nor vitis-run is on PATH")


def test_bitstream_runs_hls_then_vivado(tmp_path):
    log = tmp_path / "calls.log"
    _tool(tmp_path / "bin", "vitis_hls", f'echo "vitis_hls $@" >> {log}; /bin/mkdir -p ip')
    _tool(tmp_path / "bin", "vivado", f'echo "vivado $@" >> {log}')
    model = tmp_path / "m" / "export"
    im = random_model(CNNSpec.uniform(4, 4), seed=1)
    im.save(model)
    proc = _run("zybo_z7.bitstream", ["--model", str(model)], [tmp_path / "bin"])
    assert proc.returncode == 0, proc.stderr
    hls, viv = log.read_text().splitlines()
    assert hls.startswith("vitis_hls -f ") and hls.endswith("run_hls.tcl")
    assert (tmp_path / "m" / "hls" / "firmware" / "waferq_top.cpp").is_file()
    assert "-source" in viv and viv.endswith("bitstream/board_facts.tcl")
    out = tmp_path / "m" / "bitstream"
    assert (out / "rtl_include" / "wq_csr_map.vh").is_file()
    assert f"set wq_topology_hash 0x{im.topology_hash:08X}" in (out / "board_facts.tcl").read_text()


@pytest.mark.parametrize("cosim", [False, True])
def test_bitstream_uses_vitis_run_without_vitis_hls(tmp_path, cosim):
    """vitis_hls is deprecated from 2024.2: the unified Vitis runs the same script
    with vitis-run --mode hls --tcl. Co-simulation only with --cosim (COSIM=1)."""
    log = tmp_path / "calls.log"
    _tool(tmp_path / "bin", "vitis-run", f'echo "vitis-run $@ WQ_COSIM=$WQ_COSIM" >> {log}; /bin/mkdir -p ip')
    _tool(tmp_path / "bin", "vivado", f'echo "vivado $@" >> {log}')
    model = tmp_path / "m" / "export"
    random_model(CNNSpec.uniform(4, 4), seed=1).save(model)
    proc = _run("zybo_z7.bitstream", ["--model", str(model)] + (["--cosim"] if cosim else []),
                [tmp_path / "bin"])
    assert proc.returncode == 0, proc.stderr
    hls, _ = log.read_text().splitlines()
    assert hls.startswith("vitis-run --mode hls --tcl ") and "run_hls.tcl" in hls
    assert hls.endswith(f"WQ_COSIM={int(cosim)}")
