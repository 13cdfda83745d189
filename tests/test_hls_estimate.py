"""hls.estimate and hls.cost: the formulas on hand-computed cases, the refusal, and the W4A4 default."""
import pytest

from contract import export_dir
from hls import cost as C
from hls import estimate as E
from hls import folding as F
from hls import parallel
from contract import zoo
from contract.spec import CNNSpec


def test_memory_shapes():
    assert C.memory(36, 512) == (1, 0)          # one RAMB18 in 36x512 SDP
    assert C.memory(72, 512) == (2, 0)          # two side by side
    assert C.memory(4, 4096) == (1, 0)          # the 4x4K shape beats 4 x (1x16K)
    # 16 x 1764 (wmcnn conv1 out, 4 lanes of 4 bits): 9x2K -> 2*1, 18x1K -> 1*2, 36x512 -> 1*4
    assert C.memory(16, 1764) == (2, 0)
    assert C.memory(16, 64) == (0, 16)          # depth <= 64: one RAM64X1D a bit
    assert C.memory(8, 100) == (0, 16)          # 800 bits <= 1024: LUTRAM, 8 * ceil(100/64)


def test_acc_bits():
    # 72 * 15 * 8 + 2**31 = 2_147_492_288: 32 bits, plus the sign
    assert C.acc_bits(72, 4, 4) == 33


def test_conv_layer_by_hand():
    layers = CNNSpec.uniform(4, 4).layers()
    conv1 = next(l for l in layers if l["name"] == "conv1")   # 21x21x8 -> 16, 3x3, W4A4
    r = E.layer_estimate(conv1, pe=4, simd=36, out={"of": "conv1", "factor": 4, "depth": 2})
    # weights: 4 banks of 36*4 = 144 bits x 1152/144 = 8 words -> LUTRAM 144 LUT each = 576
    # biases: 4*32 = 128 bits x 4 words -> 128 LUT
    # multipliers: 4*4 = 16 < 48 -> LUT, 144 lanes * 16 = 2304 LUT, 144 * 8 product FF = 1152
    # adder tree: 4 * 35 adders * (8 + ceil(log2 36) = 14) = 1960 LUT and FF
    # accumulator: 4 * 33 = 132 LUT and FF; requant on 33 bits, shift clamped to -5..33
    # (tests/test_hls_requant.py counts the stages): the shift's clamp and decoders
    # once (106), each of the 4 PEs' shifters, rounding and clamp 255: 1126 LUT
    # control 120 LUT, 100 FF; registers: 36*4 input + 144*4 weight = 720 FF
    # line buffers: 3 + 1 rows (kernel + stride) of 21*8 = 168 codes, each cyclic
    # by min(36, 3*8, 168) = 24, 96 banks 4 bits x 7 -> LUTRAM 4 LUT each = 384;
    # 36 lanes pick one of 96: 36 * 4 * 24 = 3456
    assert C.line_banks(conv1, 4, 36) == 24
    assert C.requant_lut(33, 4, 4) == 106 + 4 * 255 == 1126
    # loader: a 144 + 32 = 176-bit buffer, shifted in by an 8-stage barrel shifter, 4 LUT6 deep
    assert C.loader_logic(144) == (176 * 4, 176)
    assert r["lut"] == 120 + 576 + 128 + 2304 + 1960 + 132 + 1126 + 384 + 3456 + 704 == 10890
    assert r["ff"] == 100 + 1152 + 1960 + 132 + 144 + 576 + 176 == 4240
    assert r["dsp"] == 0 and r["bram18_weights"] == 0
    # output channel: a ping-pong pair of 4 banks (cyclic 4), each its own
    # memory of 4 bits x 441*16/4 = 1764 words -> 1 BRAM18 (4x4K): 2 * 4 * 1
    assert r["bram18_acts"] == 8
    # FINN's II=1 formula: 441 pixels * (16/4) * (72/36) = 3528, + pipeline 4 + ceil(log2 36) = 6
    assert r["cycles_ideal"] == 441 * 4 * 2 + 4 + 6 == 3538
    # The template as written: the input is read once, 24 codes a step
    # (hls.parallel.fill_lanes: the largest divisor of the 168-code row up to
    # the 24 line banks). LbFill loads output row 0's input rows 0 and 1 (pad 1)
    # first: 2 * 7 steps, depth 4. Then one Mvau entry an output row (21): 21
    # pixels * 4 groups * 2 slices = 168 iterations at II 1 (the 36 codes from
    # distinct line-buffer banks, the 4 biases and the 4 outputs from distinct
    # banks), during which the next row's 7 fill steps run in another line
    # buffer; depth 4 + ceil(log2 36) = 10: 3528 + 21 * 9; ConvRows 1 a row.
    # (Before the flattened loop, 28,747; before the line
    # buffers, 69,259.) The shift word is read before the DATAFLOW region.
    assert parallel.fill_lanes(conv1, 4, 36) == 24
    assert r["ii"] == 1
    assert r["cycles"] == 14 + 3 + 3528 + 21 * 9 + 21 == 3755


def test_dsp_multipliers_and_weight_bram():
    conv0 = CNNSpec.uniform(8, 8).layers()[0]     # in_bits 8, w_bits 8
    r = E.layer_estimate(conv0, pe=2, simd=9)
    assert r["dsp"] == 2 * 9                     # 8x8 = 64 >= 48: one DSP48E1 each
    fc = CNNSpec.uniform(8, 8).layers()[-1]      # 9 x 800 weights of 8 bits
    r = E.layer_estimate(fc, pe=1, simd=1)
    # one bank 8 bits x 7200: 9x2K -> 1*4 = 4 BRAM18; biases 32 x 9 = LUTRAM
    assert r["bram18_weights"] == 4


def test_totals_and_cycles_unfolded():
    est = E.estimate(CNNSpec.uniform(4, 4).layers())
    assert est["f_clk_hz"] == 100_000_000        # board.toml FCLK0
    conv0 = est["layers"][0]
    assert conv0["cycles_ideal"] == 42 * 42 * 8 * 9 + 4 == 127_012
    # pe = simd = 1: II 1; Mvau 42*42 pixels * 8 groups * 9 slices, one entry
    # an output row (depth 4), the next row's 42 fill steps (one code each: one
    # line bank) hidden in its 3,024 iterations; ConvRows 1 a row;
    # LbFill loads input rows 0 and 1 first, in one entry (depth 4)
    assert conv0["ii"] == 1
    assert conv0["cycles"] == 42 * 42 * 8 * 9 + 42 * 3 + 42 + 2 * 42 + 3
    # DATAFLOW: the interval is the slowest stage, the latency every stage
    stages = [r["cycles"] for r in est["layers"]] + [est["core"]["source"], est["core"]["sink"]]
    slow = max(est["layers"], key=lambda r: r["cycles"])
    assert est["cycles"] == max(stages) == slow["cycles"] and est["slowest_stage"] == slow["name"]
    assert est["latency_cycles"] == sum(stages)
    assert est["maps_per_s"] == pytest.approx(1e8 / est["cycles"])
    assert est["with_platform"]["lut"] == est["total"]["lut"] + E.PLATFORM["lut"]


def test_refuses_with_layer_and_resource():
    big = zoo.ZooSpec("vgg_s", w_bits=8, a_bits=8, width=64).layers()
    with pytest.raises(E.DoesNotFit, match=r"^layer fc0: weights need [\d.]+ BRAM36 and the whole "
                                           r"design [\d.]+ BRAM36 of 140\.$"):
        E.check_fits(E.estimate(big))
    layers = CNNSpec.uniform(8, 8).layers()
    par = {l["name"]: {"pe": 1, "simd": 1} for l in layers}
    par["conv2"] = {"pe": 32, "simd": 9}         # 288 8x8 multipliers > 220 DSP
    with pytest.raises(E.DoesNotFit, match=r"^layer conv2: needs 288 DSP48E1 .* of 220\.$"):
        E.check_fits(E.estimate(layers, par))


def test_default_w4a4_folding_balances_the_dataflow_stages():
    """default_parallelism widens the slowest stage until the modelled speed
    reaches the target, inside 60 % BRAM and 70 % LUT."""
    layers = CNNSpec.uniform(4, 4).layers()
    unfolded = E.estimate(layers)
    par = F.default_parallelism(layers, target_maps_per_s=3000)
    est = E.estimate(layers, par)
    E.check_fits(est, F.DEFAULT_BUDGET)
    assert est["maps_per_s"] >= 3000 > unfolded["maps_per_s"]
    # the slowest stage sets the speed: every other stage is at most as slow
    assert max(r["cycles"] for r in est["layers"]) == est["cycles"]
    # the flattened MAC loops (wq_mvau.h, fill inside) come within 1.15x of FINN's formula
    for r in est["layers"]:
        if r["type"] in ("conv2d", "dense"):
            assert r["cycles_ideal"] - 1 <= r["cycles"] < 1.15 * r["cycles_ideal"], r


@pytest.mark.parametrize("model,goal", [("wmcnn", 10_000), ("vgg_s", 3_000)])
def test_issue16_goals_in_the_estimate(model, goal):
    """W4A4 at 100 MHz with LUT <= 70 %, BRAM <= 60 % and DSP <= 220: the
    folding default_parallelism balances reaches the goal (modelled, not
    synthesized; the cycle C-sim agrees layer by layer, test_hls_cycles)."""
    from bench.hls_cycles import GOAL_BUDGET, spec_of

    layers = spec_of(model, 4, 4).layers()
    est = E.estimate(layers, F.default_parallelism(layers, goal, GOAL_BUDGET))
    E.check_fits(est, GOAL_BUDGET)
    assert est["with_platform"]["dsp"] <= 220
    assert est["maps_per_s"] >= goal


@pytest.mark.parametrize("spec", [CNNSpec.uniform(4, 4), CNNSpec.uniform(8, 8),
                                  CNNSpec(name="mixed", w_bits=(8, 3, 2, 4), a_bits=(2, 5, 8))],
                         ids=["w4a4", "w8a8", "mixed"])
def test_generated_multipliers_are_what_the_estimate_counts(spec, tmp_path):
    """Every layer the estimate gives 0 DSP48E1 has its multipliers pinned to LUTs
    (mul_fabric -> BIND_OP impl=fabric), and every layer it counts DSPs for does not."""
    import re

    from hls import parallel
    from hls.gen_config import config_header, plan
    from contract.intmodel import random_model

    random_model(spec).save(tmp_path)
    meta = export_dir.read(tmp_path).meta
    par = parallel.load(meta["layers"], None)
    header = config_header(meta, plan(meta, par))
    est = {r["name"]: r for r in E.estimate(meta["layers"], par)["layers"]}
    weighted = [l for l in meta["layers"] if l["type"] in ("conv2d", "dense")]
    assert weighted
    kinds = set()
    for layer in weighted:
        m = re.search(rf"struct {layer['name']}_config : wq::\w+ \{{(.*?)\}};", header, re.S)
        fabric = re.search(r"static const bool mul_fabric = (true|false);", m.group(1)).group(1)
        assert (fabric == "true") == (est[layer["name"]]["dsp"] == 0), layer["name"]
        kinds.add(fabric)
    if spec.name == "mixed":
        assert kinds == {"true", "false"}  # 8x8 bits on a DSP, the narrow ones on LUTs


def test_fabric_multiplier_binds_to_luts():
    from pathlib import Path

    common = (Path(E.__file__).parent / "templates" / "wq_common.h").read_text()
    fabric = common[common.index("struct lane_mul {"):common.index("struct lane_mul<false>")]
    assert "#pragma HLS BIND_OP variable=p op=mul impl=fabric" in fabric
    # conv2d, dwconv2d and dense all multiply in the shared matrix-vector loop
    templates = Path(E.__file__).parent / "templates"
    assert "lane_mul<CONFIG_T::mul_fabric>" in (templates / "wq_mvau.h").read_text()
    for name in ("wq_conv2d.h", "wq_dwconv.h", "wq_dense.h"):
        assert "mvau<CONFIG_T" in (templates / name).read_text(), name


def _imported_dense(thresholds: bool, in_bits: int = 2):
    from contract.graph import GraphBuilder

    g = GraphBuilder(4, 4, in_bits)
    g.dense("fc0", 64, w_bits=1, a_bits=2, thresholds=thresholds)
    g.dense("out", 10, w_bits=1, logits=True)
    return g.layers


def test_bipolar_threshold_dense_by_hand():
    """A W1A2 dense 64 -> 64 with thresholds (an import's MultiThreshold)."""
    fc0 = _imported_dense(True)[0]
    r = E.layer_estimate(fc0, pe=4, simd=16, out={"of": "fc0", "factor": 4, "depth": 2})
    acc = C.acc_bits(64, 2, 1)                                  # 64 * 3 + 2**31: 33 bits
    # weights: 4 banks of 16 x 64 words -> LUTRAM 16 LUT each; biases 128 x 16 -> 128 LUT
    # thresholds: 4 PE * 3 banks of 32 x 16 -> LUTRAM 32 LUT each = 384
    # products: 64 lanes * 1 * 2 = 128 LUT (a conditional negation), no DSP
    # popcount-style tree: 4 * 16 * (2 + 1) = 192 LUT; accumulators 4 * 33
    # comparators: 4 * (3 * ceil(33 / 2) + 3) = 216 LUT, instead of a shift requant
    assert r["dsp"] == 0
    # output channel: a ping-pong pair of 4 banks of 2 bits x 16 -> 2 * 4 * 2 LUT
    # loader: 16 + 32 bits, a 4-stage shifter (96 LUT, 48 FF)
    assert r["lut"] == 120 + 64 + 128 + 384 + 128 + 192 + 4 * acc + 4 * (3 * 17 + 3) + 16 + 96
    # FF: product 64 * 3, tree 192, acc 4 * 33, input 16 * 2, weights 64 * 1, outputs 4 * 2
    assert r["ff"] == 100 + 192 + 192 + 4 * acc + 32 + 64 + 8 + 48
    # the shift word of the same layer requantized by shift is read before the
    # DATAFLOW region, so the two take the same cycles
    plain = E.layer_estimate(_imported_dense(False)[0], pe=4, simd=16, out={"of": "fc0", "factor": 4, "depth": 2})
    assert r["cycles"] == plain["cycles"]


def test_image_buffer_is_in_bits_wide():
    """The image buffers hold in_bits a code."""
    one = E.estimate(_imported_dense(False, in_bits=1))["core"]
    eight = E.estimate(_imported_dense(False, in_bits=8))["core"]
    # 4*4*4 = 64 codes in 4 banks of 16: the region's ping-pong pair and the
    # core's INFER buffer are 12 banks, each LUTRAM of in_bits x 16 (in_bits LUT)
    assert eight["lut"] - one["lut"] == 12 * (8 - 1)


def test_finn_anchor_model_is_cnv_w1a1_shaped():
    """bench.finn_anchor's model: BNN-PYNQ's CNV at W1A1, thresholds after every
    layer but the logits, and at no folding an estimate with 1-bit MACs on LUTs."""
    from bench.finn_anchor import cnv_w1a1

    layers = cnv_w1a1().layers()
    convs = [l for l in layers if l["type"] == "conv2d"]
    assert [l["out_c"] for l in convs] == [64, 64, 128, 128, 256, 256]
    assert (convs[-1]["out_h"], convs[-1]["out_w"]) == (1, 1) and layers[0]["in_bits"] == 8
    assert [l["out_features"] for l in layers if l["type"] == "dense"] == [512, 512, 10]
    assert all(l.get("act") == "thresholds" for l in layers if l["type"] != "maxpool" and l is not layers[-1])
    assert all(l["w_bits"] == 1 for l in layers if l["type"] in ("conv2d", "dense"))
    est = E.estimate(layers)
    assert est["with_platform"]["dsp"] == 0


def test_line_buffers_by_hand():
    layers = CNNSpec.uniform(4, 4).layers()
    conv2 = next(l for l in layers if l["name"] == "conv2")   # 10x10x16, 3x3, pad 1
    # simd 8 divides in_c 16: 8 banks a row, 3 + 1 rows (kernel + stride) of
    # 10*16/8 = 20 codes x 4 bits -> LUTRAM 4 LUT each = 128; each of 8 lanes
    # picks one of 4 rows: 8 * 4 * 1 = 32
    assert C.line_banks(conv2, 16, 8) == 8 and parallel.line_rows(conv2) == 4
    assert C.line_buffers(conv2, 16, 8) == (0, 32 * 4 + 8 * 4 * 1)
    # simd 12 does not divide 16: 12 banks a row, 4 rows x 12 banks of ceil(160/12) = 14
    # codes -> 4 LUT each = 192; each of 12 lanes picks one of 48 banks: 12 * 4 * 12 = 576
    assert C.line_banks(conv2, 16, 12) == 12
    assert C.line_buffers(conv2, 16, 12) == (0, 48 * 4 + 12 * 4 * 12)
    dw = next(l for l in zoo.ZooSpec("mobilenet_s", w_bits=4, a_bits=4).layers() if l["name"] == "dw2")
    c, w = dw["in_c"], dw["in_w"]
    # depthwise, one tap a word: pe banks, a lane's bank fixed; three taps a word: in_c * 3 banks
    assert C.line_banks(dw, 8, 1) == 8 and C.line_banks(dw, 8, 3) == 3 * c
    # 3 + 1 line buffers (kernel + stride); a lane picks one of 4 rows
    assert parallel.line_rows(dw) == 4
    assert C.line_buffers(dw, 8, 1)[1] == 4 * 8 * C.memory(4, w * c // 8)[1] + 8 * 4 * 1


def test_streaming_maxpool_by_hand():
    """wmcnn's pool0 (42x42x8 -> 21x21, 4-bit codes) at PE 2: one flattened
    loop over the 42 x 42 x 8 / 2 input groups at II 1, depth 4; its partial
    maxima in LUTRAM."""
    layers = CNNSpec.uniform(4, 4).layers()
    pool0 = next(l for l in layers if l["name"] == "pool0")
    r = E.layer_estimate(pool0, pe=2, simd=1)
    assert (r["cycles"], r["ii"]) == (42 * 42 * 8 // 2 + 3, 1) == (7059, 1)
    # control 120; comparators and running max 2 * 4 * 2 = 16; hacc: 1 row x 2 banks
    # of 4 bits x 4 deep, vbuf: 1 row x 2 banks of 4 bits x 84 deep (LUTRAM, 4 and 8 LUT);
    # its output channel (21 x 21 x 8 codes of 4 bits, a ping-pong pair) is BRAM
    assert r["lut"] == 120 + 16 + 2 * (4 + 8)
