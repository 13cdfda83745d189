"""hls.estimate: the formulas on hand-computed cases, the refusal, and the W4A4 default."""
import math
import pytest

from contract import export_dir
from hls import estimate as E
from contract import zoo
from contract.spec import CNNSpec


def test_memory_shapes():
    assert E.memory(36, 512) == (1, 0)          # one RAMB18 in 36x512 SDP
    assert E.memory(72, 512) == (2, 0)          # two side by side
    assert E.memory(4, 4096) == (1, 0)          # the 4x4K shape beats 4 x (1x16K)
    # 16 x 1764 (wmcnn conv1 out, 4 lanes of 4 bits): 9x2K -> 2*1, 18x1K -> 1*2, 36x512 -> 1*4
    assert E.memory(16, 1764) == (2, 0)
    assert E.memory(16, 64) == (0, 16)          # depth <= 64: one RAM64X1D a bit
    assert E.memory(8, 100) == (0, 16)          # 800 bits <= 1024: LUTRAM, 8 * ceil(100/64)


def test_acc_bits():
    # 72 * 15 * 8 + 2**31 = 2_147_492_288: 32 bits, plus the sign
    assert E.acc_bits(72, 4, 4) == 33


def test_conv_layer_by_hand():
    layers = CNNSpec.uniform(4, 4).layers()
    conv1 = next(l for l in layers if l["name"] == "conv1")   # 21x21x8 -> 16, 3x3, W4A4
    r = E.layer_estimate(conv1, pe=4, simd=36, out_lanes=4)
    # weights: 4 banks of 36*4 = 144 bits x 1152/144 = 8 words -> LUTRAM 144 LUT each = 576
    # biases: 4*32 = 128 bits x 4 words -> 128 LUT
    # multipliers: 4*4 = 16 < 48 -> LUT, 144 lanes * 16 = 2304 LUT, 144 * 8 product FF = 1152
    # adder tree: 4 * 35 adders * (8 + ceil(log2 36) = 14) = 1960 LUT and FF
    # accumulator: 4 * 33 = 132 LUT and FF; requant on 33 bits, shift clamped to -5..33
    # (tests/test_hls_requant.py counts the stages): the shift's clamp and decoders
    # once (106), each of the 4 PEs' shifters, rounding and clamp 255: 1126 LUT
    # control 120 LUT, 100 FF; registers: 36*4 input + 144*4 weight = 720 FF
    # line buffers: 3 rows of 21*8 = 168 codes, each cyclic by min(36, 3*8, 168) = 24,
    # 72 banks 4 bits x 7 -> LUTRAM 4 LUT each = 288; 36 lanes pick one of 72: 36 * 4 * 18 = 2592
    assert E.line_banks(conv1, 4, 36) == 24
    assert E.requant_lut(33, 4, 4) == 106 + 4 * 255 == 1126
    assert r["lut"] == 120 + 576 + 128 + 2304 + 1960 + 132 + 1126 + 288 + 2592 == 9226
    assert r["ff"] == 100 + 1152 + 1960 + 132 + 144 + 576 == 4064
    assert r["dsp"] == 0 and r["bram18_weights"] == 0
    # output buffer 4 lanes * 4 bits = 16 wide, 441*16/4 = 1764 deep -> 2 BRAM18
    assert r["bram18_acts"] == 2
    # FINN's II=1 formula: 441 pixels * (16/4) * (72/36) = 3528, + pipeline 4 + ceil(log2 36) = 6
    assert r["cycles_ideal"] == 441 * 4 * 2 + 4 + 6 == 3538
    # The template as written: LbFill reads the 21*21*8 input codes once at II 1,
    # in 20 entries (output rows 0..19 each need a new input row; row 20's last
    # window row is padding), depth 4: 3528 + 20 * 3. ConvSf takes its 36 codes
    # from distinct line-buffer banks, so II 1; it runs 2 trips for each of 441
    # pixels * 4 groups, (2 - 1) * 1 + depth 10 = 11 an entry; each ConvNf
    # iteration 1 + ceil(4/2) (biases, outputs), each ConvCols and ConvRows
    # iteration 1; the shift read 1. (Before the line buffers, II 18: 69,259.)
    entries = 441 * 4
    assert r["ii"] == 1
    assert r["cycles"] == 3528 + 20 * 3 + entries * 11 + entries * 3 + 441 + 21 + 1 == 28_747


def test_dsp_multipliers_and_weight_bram():
    conv0 = CNNSpec.uniform(8, 8).layers()[0]     # in_bits 8, w_bits 8
    r = E.layer_estimate(conv0, pe=2, simd=9, out_lanes=2)
    assert r["dsp"] == 2 * 9                     # 8x8 = 64 >= 48: one DSP48E1 each
    fc = CNNSpec.uniform(8, 8).layers()[-1]      # 9 x 800 weights of 8 bits
    r = E.layer_estimate(fc, pe=1, simd=1, out_lanes=1)
    # one bank 8 bits x 7200: 9x2K -> 1*4 = 4 BRAM18; biases 32 x 9 = LUTRAM
    assert r["bram18_weights"] == 4


def test_totals_and_cycles_unfolded():
    est = E.estimate(CNNSpec.uniform(4, 4).layers())
    assert est["f_clk_hz"] == 100_000_000        # board.toml FCLK0
    conv0 = est["layers"][0]
    assert conv0["cycles_ideal"] == 42 * 42 * 8 * 9 + 4 == 127_012
    # pe = simd = 1: II 1; ConvSf 9 trips + depth 4 - 1 per (pixel, channel), ConvNf 1 + 1;
    # LbFill reads the 42x42 image once, in 41 entries (depth 4)
    assert conv0["ii"] == 1
    assert conv0["cycles"] == (42 * 42 * 8 * (9 + 3) + 42 * 42 * 8 * 2 + 42 * 42 + 42 + 1
                               + 42 * 42 + 41 * 3)
    assert est["cycles"] == sum(r["cycles"] for r in est["layers"]) + est["core"]["cycles"]
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


def test_default_w4a4_fits_60_percent_bram_and_3000_maps_by_finn_formula():
    # The folding targets FINN's II=1 formula. With the conv layers on line
    # buffers (II 1) the templates as written reach about a third of it (a
    # twelfth before): the pools still read 2-port arrays, layers run one after
    # another and each reads its input once more (issue 16).
    layers = CNNSpec.uniform(4, 4).layers()
    par = E.default_parallelism(layers, target_maps_per_s=3000)
    est = E.estimate(layers, par)
    E.check_fits(est)
    assert est["utilization"]["bram18"] <= 0.6
    assert est["ideal_maps_per_s"] >= 3000
    assert est["ideal_maps_per_s"] / 4 < est["maps_per_s"] < est["ideal_maps_per_s"] / 2


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
    for name in ("wq_conv2d.h", "wq_dwconv.h", "wq_dense.h"):
        text = (Path(E.__file__).parent / "templates" / name).read_text()
        assert "lane_mul<CONFIG_T::mul_fabric>" in text, name


def _imported_dense(thresholds: bool, in_bits: int = 2):
    from contract.graph import GraphBuilder

    g = GraphBuilder(4, 4, in_bits)
    g.dense("fc0", 64, w_bits=1, a_bits=2, thresholds=thresholds)
    g.dense("out", 10, w_bits=1, logits=True)
    return g.layers


def test_bipolar_threshold_dense_by_hand():
    """A W1A2 dense 64 -> 64 with thresholds (an import's MultiThreshold)."""
    fc0 = _imported_dense(True)[0]
    r = E.layer_estimate(fc0, pe=4, simd=16, out_lanes=4)
    acc = E.acc_bits(64, 2, 1)                                  # 64 * 3 + 2**31: 33 bits
    # weights: 4 banks of 16 x 64 words -> LUTRAM 16 LUT each; biases 128 x 16 -> 128 LUT
    # thresholds: 4 PE * 3 banks of 32 x 16 -> LUTRAM 32 LUT each = 384
    # products: 64 lanes * 1 * 2 = 128 LUT (a conditional negation), no DSP
    # popcount-style tree: 4 * 16 * (2 + 1) = 192 LUT; accumulators 4 * 33
    # comparators: 4 * (3 * ceil(33 / 2) + 3) = 216 LUT, instead of a shift requant
    assert r["dsp"] == 0
    # output buffer: 4 lanes * 2 bits = 8 wide, 16 deep -> 8 LUT
    assert r["lut"] == 120 + 64 + 128 + 384 + 128 + 192 + 4 * acc + 4 * (3 * 17 + 3) + 8
    # FF: product 64 * 3, tree 192, acc 4 * 33, input 16 * 2, weights 64 * 1, outputs 4 * 2
    assert r["ff"] == 100 + 192 + 192 + 4 * acc + 32 + 64 + 8
    # no shift word to read: one cycle less than the same layer requantized by shift
    plain = E.layer_estimate(_imported_dense(False)[0], pe=4, simd=16, out_lanes=4)
    assert r["cycles"] == plain["cycles"] - 1


def test_image_buffer_is_in_bits_wide():
    """The image buffer holds in_bits a code: 4 codes of 1 bit are 4 LUTRAM bits a word."""
    one = E.estimate(_imported_dense(False, in_bits=1))["core"]
    eight = E.estimate(_imported_dense(False, in_bits=8))["core"]
    # 4*4*4 = 64 codes, 4 a word -> 16 words: 4 LUT at 1 bit, 32 LUT at 8 bits
    assert eight["lut"] - one["lut"] == 32 - 4


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
    # simd 8 divides in_c 16: 8 banks a row, 3 rows of 10*16/8 = 20 codes x 4 bits
    # -> LUTRAM 4 LUT each = 96; each of 8 lanes picks one of 3 rows: 8 * 4 * 1 = 32
    assert E.line_banks(conv2, 16, 8) == 8
    assert E.line_buffers(conv2, 16, 8) == (0, 24 * 4 + 8 * 4 * 1)
    # simd 12 does not divide 16: 12 banks a row, 3 rows x 12 banks of ceil(160/12) = 14
    # codes -> 4 LUT each = 144; each of 12 lanes picks one of 36 banks: 12 * 4 * 9 = 432
    assert E.line_banks(conv2, 16, 12) == 12
    assert E.line_buffers(conv2, 16, 12) == (0, 36 * 4 + 12 * 4 * 9)
    dw = next(l for l in zoo.ZooSpec("mobilenet_s", w_bits=4, a_bits=4).layers() if l["name"] == "dw2")
    c, w = dw["in_c"], dw["in_w"]
    # depthwise, one tap a word: pe banks, a lane's bank fixed; three taps a word: in_c * 3 banks
    assert E.line_banks(dw, 8, 1) == 8 and E.line_banks(dw, 8, 3) == 3 * c
    assert E.line_buffers(dw, 8, 1)[1] == 3 * 8 * E.memory(4, w * c // 8)[1] + 8 * 4 * 1


def test_streaming_maxpool_by_hand():
    """wmcnn's pool0 (42x42x8 -> 21x21, 4-bit codes) at PE 2: one flattened
    loop over the 42 x 42 x 8 / 2 input groups at II 1, depth 4; its partial
    maxima in LUTRAM."""
    layers = CNNSpec.uniform(4, 4).layers()
    pool0 = next(l for l in layers if l["name"] == "pool0")
    r = E.layer_estimate(pool0, pe=2, simd=1, out_lanes=2)
    assert (r["cycles"], r["ii"]) == (42 * 42 * 8 // 2 + 3, 1) == (7059, 1)
    # control 120; comparators and running max 2 * 4 * 2 = 16; hacc: 1 row x 2 banks
    # of 4 bits x 4 deep, vbuf: 1 row x 2 banks of 4 bits x 84 deep (LUTRAM, 4 and 8 LUT)
    assert r["lut"] == 120 + 16 + 2 * (4 + 8) + E.memory(8, math.ceil(21 * 21 * 8 / 2))[1]
