"""wq_maxpool.h's streaming pool against contract.intmodel's max pool, on
signed codes, for window/stride pairs the zoo does not use: gaps between
windows (pool < stride), up to three windows open along a row and down a
column (pool 3 stride 1), dropped right/bottom edges, non-square inputs,
every PE that divides the channels; and the cycle-accounting build holds
II 1 with the iteration count hls.cycle_model charges."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from contract.intmodel import _run_layer
from hls import cycle_model
from test_blob_ranges import ROOT, TEMPLATES, _ap_types

# (in_h, in_w, in_c, pool, stride, pe)
CASES = [(7, 9, 4, 2, 2, 2), (8, 8, 2, 1, 2, 1), (9, 7, 6, 3, 1, 3), (10, 11, 4, 2, 3, 4),
         (6, 6, 3, 3, 2, 1), (5, 8, 8, 2, 1, 8), (11, 5, 2, 4, 3, 2), (4, 4, 1, 4, 4, 1)]


def _layer(ih, iw, c, q, s) -> dict:
    return {"name": "p", "type": "maxpool", "in_h": ih, "in_w": iw, "in_c": c, "out_c": c, "pool": q,
            "stride": s, "out_h": (ih - q) // s + 1, "out_w": (iw - q) // s + 1}


def _source(cases, data) -> str:
    out = ['#include <cstdio>', '#include "wq_maxpool.h"']
    for i, ((ih, iw, c, q, s, pe), x) in enumerate(zip(cases, data)):
        l = _layer(ih, iw, c, q, s)
        out.append(f"struct cfg{i} : wq::maxpool_config {{ static const unsigned in_h = {ih}, in_w = {iw}, "
                   f"in_c = {c}, pool = {q}, stride = {s}, out_h = {l['out_h']}, out_w = {l['out_w']}, "
                   f"pe = {pe}, nf = {c // pe}; typedef ap_int<5> data_t; }};")
        n_out = l["out_h"] * l["out_w"] * c
        out.append(f"static ap_int<5> in{i}[{x.size}] = {{{', '.join(map(str, x.ravel()))}}};")
        out.append(f"static ap_int<5> out{i}[{n_out}];")
    out.append("int main() {")
    for i, (ih, iw, c, q, s, pe) in enumerate(cases):
        out.append(f"#ifdef WQ_CYCLES\n    ::wq_cyc::begin_message(); WQ_LAYER(p{i});\n"
                   f"    WQ_MEM(in{i}, WQ_CYCLIC, {pe}); WQ_MEM(out{i}, WQ_CYCLIC, {pe});\n#endif")
        out.append(f"    wq::maxpool2d<cfg{i}>(in{i}, out{i});")
        out.append(f"    for (unsigned j = 0; j < sizeof(out{i}) / sizeof(out{i}[0]); j++) "
                   f"std::printf(\"%d \", out{i}[j].to_int());\n    std::printf(\"\\n\");")
        out.append(f"#ifdef WQ_CYCLES\n    std::printf(\"%s\\n\", ::wq_cyc::report_json().c_str());\n#endif")
    out.append("    return 0;\n}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("cycles", [False, True], ids=["csim", "cycles"])
def test_streaming_pool_matches_reference(tmp_path, cycles):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    rng = np.random.default_rng(7)
    data = [rng.integers(-16, 16, size=(ih, iw, c)) for ih, iw, c, *_ in CASES]
    src = tmp_path / "pool.cpp"
    src.write_text(_source(CASES, data))
    exe = tmp_path / "pool"
    cmd = [gxx, "-O1", "-std=c++14", "-w", f"-I{_ap_types()}", f"-I{TEMPLATES}"]
    if cycles:
        cmd += ["-DWQ_CYCLES", "-include", str(ROOT / "hls" / "cycles" / "wq_cycles_sim.h")]
    subprocess.run([*cmd, str(src), "-o", str(exe)], check=True, capture_output=True, timeout=600)
    lines = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    step = 2 if cycles else 1
    for i, ((ih, iw, c, q, s, pe), x) in enumerate(zip(CASES, data)):
        layer = _layer(ih, iw, c, q, s)
        want = _run_layer(layer, [x[None]], {})[0]
        got = np.array(lines[i * step].split(), dtype=np.int64).reshape(want.shape)
        assert (got == want).all(), CASES[i]
        if cycles:
            rep = json.loads(lines[i * step + 1])
            assert rep["violations"] == [], CASES[i]
            loops = {x["loop"]: x for l in rep["layers"] for x in l["loops"]}
            assert set(loops) == {"PoolStream"} and loops["PoolStream"]["ii"] == 1, CASES[i]
            assert loops["PoolStream"]["iterations"] == (cycle_model.pool_span(layer, "h")
                                                         * cycle_model.pool_span(layer, "w") * c // pe)
            assert sum(l["cycles"] for l in rep["layers"]) == \
                cycle_model.layer_cycles(layer, pe, 1)["cycles"], CASES[i]
