"""The line-buffer sliding-window generator (hls/templates/wq_swg.h), compiled
with g++: for conv and maxpool layers of the zoo, its windows give exactly the
integer reference's conv2d and maxpool outputs (contract.intmodel), every input
code is read once, and the cycle accounting finds no port over-subscription
(both loops at II 1)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.needs_gxx,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")]
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")

from hls.csim_build import ap_types_dir  # noqa: E402
from contract import intmodel  # noqa: E402
from contract.spec import CNNSpec  # noqa: E402
from contract.zoo import ZooSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TB = ROOT / "tests" / "data" / "swg_tb.cpp"


def _layer(spec, kind: str, pick) -> dict:
    return next(l for l in spec.layers() if l["type"] == kind and pick(l))


# (case id, a layer of a zoo model): 3x3 pad 1, 5x5 stride 2 pad 2 (or the first
# alexnet_s conv), a 2x2 pool, and a pool whose last row/column is dropped.
CASES = {
    "wmcnn_conv3x3_pad1": _layer(CNNSpec.uniform(4, 4, in_size=12, channels=(3, 4)), "conv2d",
                                 lambda l: l["in_c"] > 1),
    "alexnet_first_conv": _layer(ZooSpec("alexnet_s", in_size=15, width=4), "conv2d", lambda l: True),
    "vgg_pool2x2": _layer(ZooSpec("vgg_s", in_size=16, width=4), "maxpool", lambda l: True),
    "pool_floor_odd": _layer(CNNSpec.uniform(4, 4, in_size=14, channels=(3, 4)), "maxpool",
                             lambda l: l["in_h"] % 2 == 1),
}
# a 3x3 conv at stride 2, pad 1 on a 7x7 map (its last column of windows ends in the padding)
CASES["conv3x3_stride2"] = {**CASES["wmcnn_conv3x3_pad1"], "in_h": 7, "in_w": 7, "stride": 2,
                            "out_h": 4, "out_w": 4}


def _run(tmp_path: Path, layer: dict, x: np.ndarray, cycles: bool, simd: int = 1) -> tuple[np.ndarray, dict | None]:
    k = layer.get("kernel", layer.get("pool"))
    geo = dict(H=layer["in_h"], W=layer["in_w"], C=layer["in_c"], K=k, S=layer["stride"],
               P=layer.get("pad", 0), SIMD=simd)
    exe = tmp_path / ("swg_cycles" if cycles else "swg")
    cmd = ["g++", "-O1", "-std=c++14", "-w", *(f"-DSWG_{n}={v}" for n, v in geo.items()),
           f"-I{ROOT / 'hls' / 'templates'}", f"-I{ap_types_dir()}"]
    if cycles:
        cmd += ["-DWQ_CYCLES", "-include", str(ROOT / "hls" / "cycles" / "wq_cycles_sim.h")]
    subprocess.run([*cmd, "-o", str(exe), str(TB)], check=True)
    res = subprocess.run([str(exe)], input="\n".join(map(str, x.ravel())) + "\n",
                         capture_output=True, text=True, check=True)
    lines = res.stdout.splitlines()
    rep = json.loads(lines.pop()) if cycles else None
    oh, ow = layer["out_h"], layer["out_w"]
    win = np.array(lines, dtype=np.int64).reshape(oh, ow, k, k, layer["in_c"])
    return win, rep


@pytest.mark.parametrize("case,simd", [(c, 1) for c in CASES] + [("vgg_pool2x2", 4), ("conv3x3_stride2", 3)])
def test_windows_give_the_integer_reference(tmp_path, case, simd):
    layer = CASES[case]
    rng = np.random.default_rng(len(case))
    x = rng.integers(0, 256, (layer["in_h"], layer["in_w"], layer["in_c"]), dtype=np.int64)
    win, _ = _run(tmp_path, layer, x, cycles=False, simd=simd)
    if layer["type"] == "conv2d":
        w = rng.integers(-8, 8, (layer["out_c"], layer["kernel"], layer["kernel"], layer["in_c"]))
        got = win.reshape(layer["out_h"], layer["out_w"], -1) @ w.reshape(layer["out_c"], -1).T
        ref = intmodel._conv(layer, x[None], w)[0]
    else:
        got = win.max(axis=(2, 3))
        ref = intmodel._run_layer(layer, [x[None]], {})[0]
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("case,simd", [("alexnet_first_conv", 1), ("vgg_pool2x2", 4)])
def test_line_buffers_hold_ii_1(tmp_path, case, simd):
    # SIMD codes a word come from SIMD cyclic banks of one line buffer: still II 1.
    layer = CASES[case]
    x = np.arange(layer["in_h"] * layer["in_w"] * layer["in_c"]) % 256
    _, rep = _run(tmp_path, layer, x, cycles=True, simd=simd)
    assert rep["violations"] == []
    loops = {l["loop"]: l for l in rep["layers"][-1]["loops"]}
    assert loops["SwgFill"]["ii"] == 1 and loops["SwgEmit"]["ii"] == 1
    k, p, c = layer.get("kernel", layer.get("pool")), layer.get("pad", 0), layer["in_c"]
    assert loops["SwgFill"]["iterations"] == (layer["in_h"] + 2 * p) * (layer["in_w"] + 2 * p) * c
    assert loops["SwgEmit"]["iterations"] == layer["out_h"] * layer["out_w"] * k * k * c // simd
