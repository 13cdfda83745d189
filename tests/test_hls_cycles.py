"""The cycle-accounting C-sim (hls/cycles.py, -DWQ_CYCLES): it catches a known
port over-subscription, passes the same kernel once partitioned, counts
pipelined loops as (trips - 1) * II + depth, and the instrumented core stays
bit-exact with the integer reference and reports the current templates' relaxed IIs."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.needs_gxx,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")]
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")

from hls import parallel  # noqa: E402
from hls.csim_build import ap_types_dir  # noqa: E402
from hls.cycles import measure  # noqa: E402
from quant.intmodel import random_model  # noqa: E402
from quant.spec import CNNSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "cycles_fixture.cpp"


def _fixture(tmp_path: Path, part: int, cycles: bool = True) -> tuple[int, dict]:
    exe = tmp_path / f"fixture_{part}_{int(cycles)}"
    cmd = ["g++", "-O1", "-std=c++14", "-w", f"-DPART={part}", f"-I{ROOT / 'hls' / 'templates'}",
           f"-I{ap_types_dir()}"]
    if cycles:
        cmd += ["-DWQ_CYCLES", "-include", str(ROOT / "hls" / "cycles" / "wq_cycles_sim.h")]
    subprocess.run([*cmd, "-o", str(exe), str(FIXTURE)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    return int(out[0]), json.loads(out[1])


def test_unpartitioned_four_reads_per_ii1_iteration_is_flagged(tmp_path):
    total, rep = _fixture(tmp_path, part=0)
    assert total == sum(range(64))
    assert rep["violations"] == [{"layer": "fixture", "loop": "Quads", "array": "data", "accesses": 4,
                                  "ports": 2, "ii_declared": 1, "ii_needed": 2}]
    loop = rep["layers"][-1]["loops"][0]
    # 16 trips at the relaxed II 2, depth 3: (16 - 1) * 2 + 3
    assert (loop["ii"], loop["iterations"], loop["entries"], loop["cycles"]) == (2, 16, 1, 33)


@pytest.mark.parametrize("part", [1, 2], ids=["cyclic2", "complete"])
def test_partitioned_array_passes(tmp_path, part):
    total, rep = _fixture(tmp_path, part=part)
    assert total == sum(range(64))
    assert rep["violations"] == []
    loop = rep["layers"][-1]["loops"][0]
    assert (loop["ii"], loop["cycles"]) == (1, 15 + 3)


def test_fixture_without_the_flag_has_no_instrumentation(tmp_path):
    # Without -DWQ_CYCLES the hooks compile to the bare accesses: same result,
    # and the runtime header is not even included.
    total, rep = _fixture(tmp_path, part=0, cycles=False)
    assert total == sum(range(64)) and rep == {}


def test_instrumented_core_is_bit_exact_and_reports_relaxed_ii(tmp_path):
    """The folding hls.estimate picks for the W4A4 CNN (SIMD 9/36/72): the
    window reads of ConvSf and pool0 come from one 2-port array, so their
    II relaxes exactly as the port count says (issue 16: 5, 18, 36 and 8)."""
    spec = CNNSpec.uniform(4, 4)
    random_model(spec, seed=1).save(tmp_path / "export")
    (tmp_path / "hls").mkdir()
    parallel.save(tmp_path / "hls" / "parallel.json", {
        "conv0": {"pe": 4, "simd": 9}, "pool0": {"pe": 4, "simd": 1}, "conv1": {"pe": 4, "simd": 36},
        "conv2": {"pe": 1, "simd": 72}, "fc": {"pe": 1, "simd": 2}})
    rep = measure(tmp_path / "export", tmp_path / "hls", n=2)
    assert rep["bit_exact"]
    assert rep["schedule"] == "sequential"
    layers = {l["name"]: l for l in rep["layers"]}
    assert rep["cycles_per_inference"] == sum(l["cycles"] for l in rep["layers"])
    ii = {(name, x["loop"]): x["ii"] for name, l in layers.items() for x in l["loops"]}
    assert ii[("conv0", "ConvSf")] == 5
    assert ii[("conv1", "ConvSf")] == 18
    assert ii[("conv2", "ConvSf")] == 36
    assert ii[("pool0", "PoolNf")] == 8
    assert ii[("fc", "DenseSf")] == 1
    flagged = {(v["layer"], v["loop"], v["array"]) for v in rep["violations"]}
    assert {("conv0", "ConvSf", "image"), ("conv1", "ConvSf", "pool0_out"),
            ("conv2", "ConvSf", "pool1_out"), ("pool0", "PoolNf", "conv0_out")} <= flagged
    # ConvSf runs once per (pixel, output group): every entry pays the fill.
    conv0 = next(x for x in layers["conv0"]["loops"] if x["loop"] == "ConvSf")
    assert conv0["entries"] == 42 * 42 * 2 and conv0["iterations"] == 42 * 42 * 2
