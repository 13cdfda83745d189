"""One synthesizable test top per layer kind: its vitis_hls script runs in
tclsh with every vendor command stubbed, and its test bench (g++, the C
simulation csim_design would run) matches the golden model's replies."""
import shutil

import pytest

from hls import layer_tops, tcl
from contract.zoo import LAYER_TOPS
from test_hls_tcl import _calls, _run_tcl


@pytest.fixture(scope="module")
def tops(tmp_path_factory):
    out = tmp_path_factory.mktemp("layer_tops")
    return {kind: layer_tops.write(kind, out, seed=i) for i, kind in enumerate(LAYER_TOPS)}


@pytest.mark.parametrize("kind", LAYER_TOPS)
def test_layer_top_has_the_layer_under_test(kind):
    layers = layer_tops.spec_for(kind).layers()
    dut = next(layer for layer in layers if layer["name"] == "dut")
    expected = {"conv3x3": "conv2d", "conv1x1_s2": "conv2d", "conv5x5": "conv2d", "dwconv": "conv2d",
                "dense": "dense"}.get(kind, kind)
    assert dut["type"] == expected
    if kind == "dwconv":
        assert dut["groups"] == dut["in_c"] and dut["stride"] == 2


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed (apt-get install tcl)")
@pytest.mark.parametrize("kind", LAYER_TOPS)
def test_layer_top_script_runs_the_whole_flow(tops, kind):
    proc, recorded = _run_tcl(tops[kind] / "run_hls.tcl", env={"WQ_COSIM": "1"})
    assert proc.returncode == 0, proc.stderr
    assert _calls(recorded, "set_top") == [["waferq_top"]]
    for step in ("csim_design", "csynth_design", "cosim_design", "export_design"):
        assert _calls(recorded, step), f"{kind}: no {step}"
    assert (tops[kind] / "tb" / tcl.TB_NAME).exists()


@pytest.mark.slow
@pytest.mark.needs_gxx
@pytest.mark.parametrize("kind", LAYER_TOPS)
def test_layer_top_testbench_matches_golden_replies(tops, kind):
    res = layer_tops.run_testbench(tops[kind])
    assert res.returncode == 0, res.stdout + res.stderr
    # 9 requests, then INFER_BATCH: U8, and PACK_DIE2 where the top has one input channel
    n = len((tops[kind] / "tb" / tcl.STIMULUS).read_text().splitlines())
    assert n in (10, 11) and f"{n} of {n} replies match" in res.stdout
