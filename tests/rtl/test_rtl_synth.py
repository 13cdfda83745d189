"""Every PL glue block synthesizes with yosys synth_xilinx (xc7): no errors, no latches,
LUTs and flip-flops present; bad parameters stop elaboration."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from zybo_z7.rtl import synth

_skip_no_yosys = pytest.mark.skipif(synth.yosys_path() is None,
                                    reason="yosys is not installed (apt-get install yosys)")


def needs_yosys(fn):
    return pytest.mark.needs_yosys(_skip_no_yosys(fn))


@pytest.fixture(scope="module")
def synth_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "synth.json"
    assert synth.main(["--out", str(out)]) == 0
    return json.loads(out.read_text())


@needs_yosys
@pytest.mark.parametrize("block", list(synth.BLOCKS))
def test_block_synthesizes(synth_results, block):
    r = synth_results[block]
    assert r["errors"] == 0
    assert r["latches"] == 0, f"{block} infers latches"
    assert r["LUT"] > 0 and r["FF"] > 0
    assert r["FF"] == r["FDRE"] + r["FDSE"] + r["FDCE"] + r["FDPE"]


@needs_yosys
def test_table_prints(synth_results, capsys):
    text = synth.table(synth_results)
    assert "wq_glue_top" in text and "LUT" in text.splitlines()[0]


def test_parse_stat():
    text = """
   Number of cells:                 12
     CARRY4                          2
     FDRE                            5
     LUT2                            3
     LUT6                            2

"""
    r = synth.summarize(synth.parse_stat(text), "Latch inferred for signal x\n")
    assert (r["LUT"], r["FF"], r["CARRY4"], r["latches"], r["DSP48E1"]) == (5, 5, 2, 1, 0)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is not installed")
def test_bad_parameter_stops_elaboration(tmp_path):
    from zybo_z7 import csr_map

    csr_map.write(tmp_path)
    vvp = tmp_path / "bad.vvp"
    subprocess.run(["iverilog", "-g2012", f"-I{tmp_path}", "-Pwq_frame_guard.MAX_WORDS=3",
                    "-s", "wq_frame_guard", "-o", str(vvp),
                    str(synth.RTL_DIR / "wq_frame_guard.v")], check=True)
    proc = subprocess.run(["vvp", "-n", str(vvp)], capture_output=True, text=True, timeout=30)
    assert "MAX_WORDS must be at least 4" in proc.stdout + proc.stderr
