"""The cycle-accounting C-sim (hls/cycles.py, -DWQ_CYCLES): it catches a known
port over-subscription, passes the same kernel once partitioned, counts
pipelined loops as (trips - 1) * II + depth, and the instrumented core stays
bit-exact with the integer reference and reports the current templates' relaxed IIs."""
from __future__ import annotations

import json
import re
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
from contract.intmodel import random_model  # noqa: E402
from contract.spec import CNNSpec  # noqa: E402

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
    """The folding hls.estimate picks for the W4A4 CNN (SIMD 9/36/72): the conv
    layers take their windows from line buffers (issue 16), so the shared
    matrix-vector loop (wq_mvau.h Mvau) holds II=1 at every SIMD, and the input
    array is read once, in order, by LbFill, fill_lanes codes a cycle;
    the pool streams its input once too (PoolStream, II 1)."""
    spec = CNNSpec.uniform(4, 4)
    random_model(spec, seed=1).save(tmp_path / "export")
    (tmp_path / "hls").mkdir()
    parallel.save(tmp_path / "hls" / "parallel.json", {
        "conv0": {"pe": 4, "simd": 9}, "pool0": {"pe": 4, "simd": 1}, "conv1": {"pe": 4, "simd": 36},
        "conv2": {"pe": 1, "simd": 72}, "fc": {"pe": 1, "simd": 2}})
    rep = measure(tmp_path / "export", tmp_path / "hls", n=2)
    assert rep["bit_exact"]
    assert rep["schedule"] == "dataflow"
    layers = {l["name"]: l for l in rep["layers"]}
    # the region's stages: source, the layers, sink; the message around it: core, reply
    stages = [l["cycles"] for l in rep["layers"] if l["name"] not in ("core", "reply")]
    assert [l["name"] for l in rep["layers"]][:2] == ["core", "source"] and "sink" in layers
    assert rep["cycles_per_inference"] == max(stages) and rep["latency_cycles"] == sum(stages)
    assert rep["message_cycles"] == sum(l["cycles"] for l in rep["layers"])
    ii = {(name, x["loop"]): x["ii"] for name, l in layers.items() for x in l["loops"]}
    for conv in ("conv0", "conv1", "conv2"):
        assert ii[(conv, "Mvau")] == 1 and ii[(conv, "LbFill")] == 1, conv
    assert ii[("fc", "Mvau")] == 1
    flagged = {(v["layer"], v["loop"], v["array"]) for v in rep["violations"]}
    assert not any(layer.startswith(("conv", "fc", "pool")) for layer, _, _ in flagged), flagged
    assert ii[("pool0", "PoolStream")] == 1
    # pool0 (42x42x8, pe 4) reads each input code once: 42 * 42 * 2 iterations
    pool = {x["loop"]: x for x in layers["pool0"]["loops"]}
    assert list(pool) == ["PoolStream"] and pool["PoolStream"]["iterations"] == 42 * 42 * 2
    # Mvau is entered once an output row and runs (pixel, output group, slice)
    # flattened: 42 x 42 pixels x 2 groups x 1 slice; it also loads the next
    # output row's input row (14 steps, three codes each: its 3 line banks,
    # hls.parallel.fill_lanes), which takes fewer steps than the 84 MACs.
    # LbFill, once, loads what output row 0 needs: input rows 0 and 1 (pad 1).
    loops = {x["loop"]: x for x in layers["conv0"]["loops"]}
    assert loops["Mvau"]["entries"] == 42 and loops["Mvau"]["iterations"] == 42 * 42 * 2
    assert loops["LbFill"]["iterations"] == 2 * 42 // 3 and loops["LbFill"]["entries"] == 1
    # conv1 reads pool0's output, 24 codes a cycle: its line banks are
    # min(simd 36, 3 x 8, 21 x 8) = 24, which divides the 168-code row
    conv1 = spec.layers()[2]
    assert parallel.fill_lanes(conv1, 4, 36) == 24
    fills = {x["loop"]: x for x in layers["conv1"]["loops"]}["LbFill"]
    assert (fills["iterations"], fills["ii"]) == (2 * 21 * 8 // 24, 1)
    assert {x["loop"]: x for x in layers["fc"]["loops"]}["Mvau"]["entries"] == 1
    # and hls.estimate models the same cycles, layer by layer
    from hls import estimate as E

    est = E.estimate(spec.layers(), parallel.load(spec.layers(), tmp_path / "hls" / "parallel.json"))
    assert {r["name"]: r["cycles"] for r in est["layers"]} == {
        n: layers[n]["cycles"] for n in ("conv0", "pool0", "conv1", "pool1", "conv2", "pool2", "fc")}
    assert est["cycles"] == rep["cycles_per_inference"] and est["latency_cycles"] == rep["latency_cycles"]
    assert est["message_cycles"] == rep["message_cycles"]
    # make estimate's file: the headline keys, and the C-sim's cycles next to the model's
    (tmp_path / "cycles.json").write_text(json.dumps(rep))
    assert E.main(["--model", str(tmp_path / "export"), "--parallel", str(tmp_path / "hls" / "parallel.json"),
                   "--json", str(tmp_path / "estimate.json"), "--cycles", str(tmp_path / "cycles.json")]) == 0
    out = json.loads((tmp_path / "estimate.json").read_text())
    assert {"cycles_per_inference", "maps_per_s", "lut", "ff", "bram36", "dsp", "fits"} <= set(out)
    assert out["cycles_per_inference"] == rep["cycles_per_inference"] and out["fits"] is True
    assert out["csim_gap"] == 0.0 and out["maps_per_s"] == pytest.approx(1e8 / rep["cycles_per_inference"])


# Loops inside a pipelined loop: the pipeline unrolls them, so they are no loop
# of their own in the schedule (UG1399, PIPELINE).
_INSIDE_PIPELINE: set[str] = set()
# The core's loop over a batch's images: its body is the whole network, whose
# layers account for themselves (a WQ_SEQ would take their loose accesses).
_AROUND_LAYERS = {"Images"}


def _template_loops():
    from test_hls_rules import TEMPLATES, strip_comments

    for p in sorted(TEMPLATES.glob("*.h")):
        lines = [l.strip() for l in strip_comments(p.read_text()).splitlines()]
        for i, line in enumerate(lines):
            if re.match(r"(for|while)\s*\(", line):
                label = lines[i - 1].rstrip(":")
                body = [l for l in lines[i + 1:i + 4] if l]
                yield p.name, label, body


def test_every_template_loop_carries_its_cycle_hook():
    """A pipelined loop's WQ_PIPE names its label and the pragma's II; a loop
    neither pipelined nor unrolled has WQ_SEQ: so the accounting counts every
    loop as the pragmas make it."""
    seen = 0
    for name, label, body in _template_loops():
        seen += 1
        first = body[0]
        if first == "#pragma HLS UNROLL" or label in _INSIDE_PIPELINE | _AROUND_LAYERS:
            continue
        m = re.fullmatch(r"#pragma HLS PIPELINE II = (\d+|WQ_\w+)", first)
        if m:
            assert re.match(rf"WQ_PIPE\({label}, {m.group(1)}, ", body[1]), (name, label, body[1])
        else:
            assert body[0] == f"WQ_SEQ({label});", (name, label, body[0])
    assert seen >= 25


def test_partition_pragmas_match_registered_ports():
    """Every array the templates partition is registered with those ports, and
    the weight memories, partitioned by PE in the layer templates, are
    registered as one bank a row in the generated top."""
    from test_hls_rules import TEMPLATES, strip_comments

    for p in sorted(TEMPLATES.glob("*.h")):
        code = strip_comments(p.read_text())
        for var, how in re.findall(r"#pragma HLS ARRAY_PARTITION variable=(\w+) (complete(?: dim=1)?)", code):
            if how == "complete dim=1":
                # a template's own array registers itself; w and thr are registered by hls/gen_top.py
                assert var in ("w", "thr") or re.search(rf"WQ_MEM\({var}, WQ_ROWS(_CYCLIC)?, \w+\);", code), (p.name, var)
            else:
                assert re.search(rf"WQ_MEM\({var}, WQ_REGS, 0\);", code), (p.name, var)
        for var, factor in re.findall(r"#pragma HLS ARRAY_PARTITION variable=(\w+) cyclic factor=(\w+) dim=2", code):
            assert re.search(rf"WQ_MEM\({var}, WQ_ROWS_CYCLIC, {factor}\);", code), (p.name, var)
    from hls.gen_top import _registrations
    from hls.gen_config import LayerPlan

    plan = LayerPlan({"name": "c0", "type": "conv2d"}, "conv2d", [], "x", 1, section_words=3)
    assert "WQ_MEM(c0_w, WQ_ROWS, 0);" in _registrations([plan])
    thr = LayerPlan({"name": "t0", "type": "dense", "act": "thresholds"}, "dense", [], "x", 1, section_words=3)
    assert "WQ_MEM(t0_thr, WQ_ROWS, 0);" in _registrations([thr])


def _zoo_case(base: Path, spec, par: dict | None, features: bool) -> tuple[dict, dict]:
    from hls import estimate as E
    from hls import folding as F

    random_model(spec, seed=2).save(base / "export")
    (base / "hls").mkdir(parents=True)
    layers = spec.layers()
    par = par if par is not None else F.default_parallelism(layers, target_maps_per_s=20_000)
    parallel.save(base / "hls" / "parallel.json", par)
    rep = measure(base / "export", base / "hls", n=1, features=features)
    est = E.estimate(layers, parallel.load(layers, base / "hls" / "parallel.json"), features=features)
    return rep, E.summary(est, rep)


def test_estimate_matches_cycle_csim_for_every_zoo_family(tmp_path):
    """hls.estimate's cycles against the measured ones, every layer and the
    total within 10 % (the model mirrors the templates, so they agree exactly
    today), on each zoo family folded by default_parallelism, and on the
    buffer-zone net with a hand folding and the feature reply. Small inputs:
    the loops' structure, not their size, is what is compared."""
    from concurrent.futures import ThreadPoolExecutor

    from contract.zoo import ZooSpec, buffer_spec

    cases = {f: (ZooSpec(f, in_size=16, width=4, w_bits=4, a_bits=4), None, False)
             for f in ("vgg_s", "mobilenet_s", "alexnet_s")}
    cases["xception_fpn"] = (buffer_spec(in_size=16, width=2, w_bits=2, a_bits=2),
                             {"cam": {"pe": 4, "simd": 8}, "stem1": {"pe": 2, "simd": 3}}, True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futs = {k: pool.submit(_zoo_case, tmp_path / k, *v) for k, v in cases.items()}
        results = {k: f.result() for k, f in futs.items()}
    for name, (rep, summ) in results.items():
        assert rep["bit_exact"], name
        # issue 16's "done when": no port over-subscription in any zoo model, and
        # every FIFO channel of the DATAFLOW region accessed wholly and in order
        assert rep["violations"] == [] and rep["fifo_errors"] == [], (name, rep["violations"], rep["fifo_errors"])
        assert abs(summ["csim_gap"]) <= 0.10, (name, summ["csim_gap"])
        assert all(abs(g) <= 0.10 for g in summ["csim_layer_gap"].values()), (name, summ["csim_layer_gap"])
    # the folded families do have parallel lanes, so the comparison covers II > 1
    assert any(x["ii"] > 1 for rep, _ in results.values() for l in rep["layers"] for x in l["loops"])


def test_loader_width_over_ap_int_limit_is_refused_before_build(tmp_path):
    """SIMD * w_bits + 32 bits of loader buffer over ap_int's 1,024 bits made
    the C-sim abort at run time (found by bench.hls_cycles on vgg_s W8A8 with
    the W4A4 folding); the folding is now refused when it is read, with the fix."""
    from hls.generate import generate
    from contract.zoo import ZooSpec

    spec = ZooSpec("vgg_s", in_size=16, width=16, w_bits=8, a_bits=8)
    random_model(spec).save(tmp_path / "export")
    (tmp_path / "hls").mkdir()
    conv = next(l for l in spec.layers() if l["type"] == "conv2d" and parallel.fan_in(l) >= 144)
    parallel.save(tmp_path / "hls" / "parallel.json", {conv["name"]: {"pe": 1, "simd": 144}})
    with pytest.raises(ValueError, match=r"144 x 8-bit weights \+ 32 = 1184 bits .* over the 1,024-bit "
                                         r"ap_int limit; use simd <= 124"):
        generate(tmp_path / "export", tmp_path / "hls")


def test_vitis_never_gets_the_accounting_runtime(tmp_path):
    """The runtime header is not a design file of run_hls.tcl, and the
    generated top names it nowhere: without -DWQ_CYCLES the hooks are empty."""
    from hls import tcl
    from hls.generate import generate

    random_model(CNNSpec.uniform(4, 4, in_size=16, channels=(2, 3))).save(tmp_path / "export")
    fw = generate(tmp_path / "export", tmp_path / "hls")
    assert (fw / "wq_cycles_sim.h").is_file()
    srcs, heads = tcl.design_files(fw)
    assert "wq_cycles_sim.h" not in {p.name for p in [*srcs, *heads]}
    assert "wq_cycles_sim" not in (fw / "waferq_top.cpp").read_text()
    # g++ -E without the flag: no trace of the accounting in what Vitis would compile
    out = subprocess.run(["g++", "-std=c++14", "-E", "-P", f"-I{fw}", f"-I{ap_types_dir()}",
                          str(fw / "waferq_top.cpp")], check=True, capture_output=True, text=True).stdout
    assert "wq_cyc" not in out and "WQ_AT" not in out and "WQ_PIPE" not in out


@pytest.mark.parametrize("case", ["packed", "depthwise"])
def test_line_buffer_banks_hold_ii1_for_every_lane_layout(tmp_path, case):
    """The line buffers' three lane layouts: simd dividing in_c (lane s reads
    bank s), simd not dividing it (codes of one word spread over taps and
    rows), and depthwise with one or several window columns a word, each with
    padding and stride 2 where the model has them: bit-exact, every conv MAC
    loop at II 1 with no port over-subscription, and the model's cycles equal
    to the C-sim's."""
    from contract.zoo import ZooSpec
    from hls import estimate as E

    if case == "packed":
        spec = CNNSpec.uniform(4, 4)   # conv1 in_c 8, conv2 in_c 16
        par = {"conv0": {"pe": 2, "simd": 3}, "conv1": {"pe": 2, "simd": 4}, "conv2": {"pe": 4, "simd": 16}}
    else:
        spec = ZooSpec("mobilenet_s", in_size=16, width=4, w_bits=4, a_bits=4)
        par = {"dw0": {"pe": 2, "simd": 1}, "dw1": {"pe": 4, "simd": 3}, "dw2": {"pe": 16, "simd": 9},
               "dw3": {"pe": 1, "simd": 9}, "pw1": {"pe": 2, "simd": 8}, "stem": {"pe": 4, "simd": 9}}
    random_model(spec, seed=4).save(tmp_path / "export")
    (tmp_path / "hls").mkdir()
    parallel.save(tmp_path / "hls" / "parallel.json", par)
    rep = measure(tmp_path / "export", tmp_path / "hls", n=1)
    assert rep["bit_exact"]
    loops = {(l["name"], x["loop"]): x["ii"] for l in rep["layers"] for x in l["loops"]}
    macs = {k: v for k, v in loops.items() if k[1] in ("Mvau", "LbFill")}
    assert macs and set(macs.values()) == {1}, macs
    assert not [v for v in rep["violations"] if (v["layer"], v["loop"]) in macs]
    layers = spec.layers()
    est = E.estimate(layers, parallel.load(layers, tmp_path / "hls" / "parallel.json"))
    assert {r["name"]: r["cycles"] for r in est["layers"]} == {
        l["name"]: l["cycles"] for l in rep["layers"] if l["name"] in {r["name"] for r in est["layers"]}}
