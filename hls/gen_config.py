"""``wq_config.h``: one typed config struct per layer, and the plan behind it.

``plan(meta, parallelism)`` walks the layer graph once and decides, per layer,
the C++ types of its input(s) and output, its blob offset and its folding
(``hls.parallel``); ``config_header`` prints the plan as config structs that
derive from the template bases (``wq::conv2d_config`` ...). Every member the
templates read is set here; the bases document them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from protocol import stream as S
from contract import blob
from contract.graph import INPUT, has_section, is_threshold, n_thresholds, shift_names
from contract.spec import input_bits, input_shape

from hls import batch, parallel
from hls.cost import acc_bits, gap_sum_bits, requant_range, uses_dsp

CORE_VERSION = 1  # what QUERY reports; the reference core (hls/refcore.py) reads it here

# layer type -> (template base struct, template function, header)
KINDS = {
    "conv2d": ("conv2d_config", "conv2d", "wq_conv2d.h"),
    "dwconv": ("dwconv_config", "dwconv2d", "wq_dwconv.h"),
    "dense": ("dense_config", "dense", "wq_dense.h"),
    "maxpool": ("maxpool_config", "maxpool2d", "wq_maxpool.h"),
    "gap": ("gap_config", "gap", "wq_gap.h"),
    "add": ("add_config", "add", "wq_add.h"),
    "upsample": ("upsample_config", "upsample", "wq_upsample.h"),
    "quant": ("quant_config", "quant", "wq_requant.h"),
}


@dataclass
class LayerPlan:
    layer: dict
    kind: str                       # a KINDS key (conv2d with groups > 1 is "dwconv")
    in_types: list[str]             # C++ type of each input buffer
    out_t: str                      # C++ type of the output buffer
    out_size: int                   # elements of the output buffer
    pe: int = 1
    simd: int = 1
    blob_offset: int = 0
    section_words: int = 0
    # Codes a cycle the layer's loops read from each input array and write to
    # its output array, as consecutive indices. hls.gen_top partitions every
    # activation array cyclically by the most lanes any of its users needs, so
    # a run of that many consecutive codes always falls in distinct banks.
    in_lanes: int = 1
    out_lanes: int = 1
    members: list[tuple[str, str, str]] = field(default_factory=list)  # (type, name, value)
    types: list[tuple[str, str]] = field(default_factory=list)         # (typedef name, type)

    @property
    def name(self) -> str:
        return self.layer["name"]


def kind_of(layer: dict) -> str:
    """The KINDS key of a layer: a grouped conv2d is the depthwise template."""
    return "dwconv" if layer["type"] == "conv2d" and layer.get("groups", 1) > 1 else layer["type"]


def _code_t(bits: int, unsigned: bool) -> str:
    return f"ap_uint<{bits}>" if unsigned else f"ap_int<{bits}>"


def feature_layer(layers: list[dict]) -> dict:
    """The layer whose output is the last feature map: the input of the last
    global average pool (the "cam" layer of xception_fpn), else the input of
    the logits layer."""
    by_name = {layer["name"]: layer for layer in layers}
    gaps = [layer for layer in layers if layer["type"] == "gap"]
    src = (gaps[-1] if gaps else layers[-1])["inputs"][0]
    if src == INPUT:
        raise ValueError("the feature map would be the input image; the model has no feature layer")
    return by_name[src]


def model_input(meta: dict) -> tuple[int, int, int, int]:
    """(H, W, C, code bits) of the model's input, from model.json's spec (any family;
    an imported graph may be non-square and take fewer than 8 bits a code)."""
    # The contract's rule, on the dict as written (hand-made specs of tests carry no family class).
    spec = SimpleNamespace(**{"in_size": None, "in_channels": 1, **meta["spec"]})
    return (*input_shape(spec), input_bits(spec))


def check_topology(layers: list[dict], n_classes: int) -> None:
    last = layers[-1] if layers else None
    if last is None or last["type"] != "dense" or last["requant"] or last["out_features"] != n_classes:
        raise ValueError("the last layer must be the logits layer: a dense layer without requant "
                         f"and {n_classes} outputs")
    for layer in layers[:-1]:
        if layer["type"] not in KINDS:
            raise ValueError(f"layer {layer['name']}: type {layer['type']!r} has no HLS template")
        if layer["type"] == "dense" and not layer["requant"]:
            raise ValueError(f"layer {layer['name']}: only the last layer may produce logits")
        if layer["out_bits"] > 16:
            raise ValueError(f"layer {layer['name']}: {layer['out_bits']}-bit activations are not supported")
        if is_threshold(layer) and layer["type"] == "conv2d" and layer["groups"] > 1:
            raise ValueError(f"layer {layer['name']}: a depthwise conv with thresholds has no HLS "
                             "template (wq_dwconv.h requantizes by shift only)")


def plan(meta: dict, par: dict[str, dict]) -> list[LayerPlan]:
    layers = meta["layers"]
    check_topology(layers, len(meta["spec"]["classes"]))
    types = {INPUT: _code_t(model_input(meta)[3], True)}
    offset, plans = 0, []
    for layer in layers:
        t, name = layer["type"], layer["name"]
        kind = kind_of(layer)
        ins = [types[i] for i in layer["inputs"]]
        size = layer["out_h"] * layer["out_w"] * layer["out_c"]
        if t in ("maxpool", "upsample"):
            out_t = ins[0]
        elif t == "dense" and not layer["requant"]:
            out_t = f"ap_int<{acc_bits(layer['in_features'], layer['in_bits'], layer['w_bits'])}>"
        elif is_threshold(layer):     # a count of thresholds: 0..2**out_bits - 1
            out_t = _code_t(layer["out_bits"], True)
        else:
            out_t = _code_t(layer["out_bits"], layer["relu"])
        p = LayerPlan(layer, kind, ins, out_t, size, par[name]["pe"], par[name]["simd"])
        if has_section(layer):
            p.blob_offset, p.section_words = offset, blob.section_words(layer)
            offset += p.section_words
        _fill(p)
        p.in_lanes, p.out_lanes = lanes(p)
        p.members += [("unsigned", "in_lanes", p.in_lanes), ("unsigned", "out_lanes", p.out_lanes)]
        types[name] = out_t
        plans.append(p)
    if offset != meta["blob_words"]:
        raise ValueError(f"model.json: blob_words {meta['blob_words']} != {offset} from the layer list")
    return plans


# Kinds whose one flattened II=1 loop reads and writes ``pe`` consecutive codes
# of each of its arrays an iteration (wq_maxpool.h, wq_gap.h, wq_add.h,
# wq_upsample.h, wq_requant.h quant).
_PE_RUNS = ("maxpool", "gap", "add", "upsample", "quant")


def lanes(p: LayerPlan) -> tuple[int, int]:
    """(in_lanes, out_lanes) of a layer as its template accesses its arrays:
    one code a cycle unless the template reads or writes a run of them."""
    if p.kind in ("conv2d", "dwconv"):   # lb_fill's runs in; an output group's PE codes out (wq_mvau.h)
        return parallel.fill_lanes(p.layer, p.pe, p.simd), p.pe
    if p.kind == "dense":                # SIMD consecutive inputs a cycle; PE outputs
        return p.simd, p.pe
    if p.kind in _PE_RUNS:
        return p.pe, p.pe
    return 1, 1


def _signed_width(ctype: str) -> int:
    """Signed bits that hold every value of an ap_int<N> / ap_uint<N> code type."""
    bits = int(ctype[ctype.index("<") + 1:ctype.index(">")])
    return bits + 1 if ctype.startswith("ap_uint") else bits


def _rq(width: int, out_bits: int, prefix: str = "rq") -> list[tuple[str, str, str]]:
    """Config members of one requantization of a ``width``-bit signed value:
    its width and the shift range that matters (cost.requant_range; the
    generated header checks them against wq::rq_range)."""
    lo, hi = requant_range(width, out_bits)
    return [("unsigned", f"{prefix}_bits", width), ("int", f"{prefix}_shift_lo", lo),
            ("int", f"{prefix}_shift_hi", hi)]


def partition(plans: list[LayerPlan], name: str) -> int:
    """Cyclic partition factor of the array ``name`` (a layer output or INPUT):
    the most lanes its producer writes or any consumer reads a cycle."""
    f = max([p.out_lanes for p in plans if p.name == name] + [1])
    for p in plans:
        if name in p.layer["inputs"]:
            f = max(f, p.in_lanes)
    return f


def _fill(p: LayerPlan) -> None:
    L, u, b = p.layer, "unsigned", "bool"
    m = p.members
    geo = [(u, k, L[k]) for k in ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c")]
    req = [(u, "out_bits", L["out_bits"]), (b, "relu", "true" if L["relu"] else "false")]
    if has_section(L):
        sec = [(u, "n_shifts", len(shift_names(L))), (u, "blob_offset", p.blob_offset),
               (u, "section_words", p.section_words)]
    else:
        sec = []
    nf = L["out_c"] // p.pe
    if p.kind in ("conv2d", "dwconv", "dense"):
        fan = parallel.fan_in(L)
        sf = fan // p.simd
        n_out = parallel.out_channels(L)
        n_w = n_out * fan
        acc = acc_bits(fan, L["in_bits"], L["w_bits"])
        if p.kind == "dense":
            m += [(u, "n_in", L["in_features"]), (u, "n_out", n_out),
                  (b, "requant", "true" if L["requant"] else "false")]
        else:
            m += geo + [(u, k, L[k]) for k in ("kernel", "stride", "pad")] + [(u, "n_out", n_out)]
            m += [(u, "line_banks", parallel.line_banks(L, p.pe, p.simd)), (u, "line_rows", parallel.line_rows(L)),
                  (u, "fill_lanes", parallel.fill_lanes(L, p.pe, p.simd))]
        # LUT multipliers where the estimate counts no DSP48E1 (hls.cost.uses_dsp)
        fabric = not uses_dsp(L["w_bits"], L["in_bits"])
        m += [(u, "w_bits", L["w_bits"]), (b, "mul_fabric", "true" if fabric else "false")] + req + [
            (u, "fan_in", fan), (u, "pe", p.pe), (u, "simd", p.simd), (u, "nf", nf), (u, "sf", sf),
            (u, "fold", nf * sf), (u, "n_weights", n_w), (u, "wwords", nf * sf),
            (u, "word_bits", p.simd * L["w_bits"]),
            (u, "weight_mem_bits", p.pe * nf * sf * p.simd * L["w_bits"])] + sec
        m += _rq(acc, L["out_bits"])
        n_thr = n_thresholds(L)
        m += [(u, "n_thr", n_thr), (u, "thr_rows", p.pe * n_thr if n_thr else 1),
              (u, "thr_depth", nf if n_thr else 1)]
        # a 1-bit weight is bipolar, -1 or +1, which ap_int<1> cannot hold
        p.types += [("in_t", p.in_types[0]), ("out_t", p.out_t), ("weight_t", f"ap_int<{max(2, L['w_bits'])}>"),
                    ("wword_t", f"ap_uint<{p.simd * L['w_bits']}>"), ("accum_t", f"ap_int<{acc}>")]
    elif p.kind in ("maxpool", "upsample"):
        m += [(u, k, L[k]) for k in ("in_h", "in_w", "in_c", "out_h", "out_w")]
        m += [(u, "pool", L["pool"]), (u, "stride", L["stride"])] if p.kind == "maxpool" else \
             [(u, "factor", L["factor"])]
        m += [(u, "pe", p.pe), (u, "nf", nf)]
        p.types += [("data_t", p.in_types[0])]
    elif p.kind == "gap":
        sum_bits = gap_sum_bits(L)
        m += [(u, k, L[k]) for k in ("in_h", "in_w", "in_c")] + [(u, "pe", p.pe), (u, "nf", nf)]
        m += req + sec + _rq(sum_bits, L["out_bits"])
        p.types += [("in_t", p.in_types[0]), ("out_t", p.out_t), ("sum_t", f"ap_int<{sum_bits}>")]
    elif p.kind == "add":
        m += [(u, k, L[k]) for k in ("out_h", "out_w", "out_c")] + [(u, "pe", p.pe), (u, "nf", nf)]
        ab = L["align_bits"]
        m += [(u, "align_bits", ab)] + req + sec + _rq(ab + 1, L["out_bits"])
        m += _rq(_signed_width(p.in_types[0]), ab, "rq_a") + _rq(_signed_width(p.in_types[1]), ab, "rq_b")
        p.types += [("in_t", p.in_types[0]), ("in_b_t", p.in_types[1]), ("out_t", p.out_t)]
    else:  # quant
        m += [(u, k, L[k]) for k in ("out_h", "out_w", "out_c")] + [(u, "pe", p.pe), (u, "nf", nf)]
        m += req + sec + _rq(_signed_width(p.in_types[0]), L["out_bits"])
        p.types += [("in_t", p.in_types[0]), ("out_t", p.out_t)]


def feature_words(meta: dict, features: bool) -> tuple[int, dict | None]:
    if not features:
        return 0, None
    layer = feature_layer(meta["layers"])
    if layer["out_bits"] > 8:
        raise ValueError(f"feature layer {layer['name']}: {layer['out_bits']}-bit codes do not fit a byte")
    return S.infer_words(layer["out_h"] * layer["out_w"] * layer["out_c"]), layer


def config_header(meta: dict, plans: list[LayerPlan], features: bool = False) -> str:
    spec = meta["spec"]
    h, w, c, in_bits = model_input(meta)
    n_classes = len(spec["classes"])
    n_feat, _ = feature_words(meta, features)
    headers = sorted({KINDS[p.kind][2] for p in plans})
    from hls.cycle_model import rx_words_ii   # (cycle_model imports nothing of this module)

    rx_ii = rx_words_ii([p.layer for p in plans], {p.name: {"pe": p.pe, "simd": p.simd} for p in plans})
    out = ["// Generated by hls/generate.py from model.json. Do not edit.",
           f"// Model {spec['name']}: topology hash 0x{meta['topology_hash']:08x}.",
           "#ifndef WQ_CONFIG_H", "#define WQ_CONFIG_H", "",
           "// RxWords' II: the loader writes up to this many slices of one stream",
           "// word into one weight bank, two a cycle (hls.cycle_model.rx_words_ii).",
           f"#define WQ_RX_II {rx_ii}", "", '#include "wq_common.h"',
           *[f'#include "{hd}"' for hd in headers], '#include "wq_core.h"', ""]
    for p in plans:
        out.append(f"// {p.name}: {p.layer['type']}, inputs {', '.join(p.layer['inputs'])}")
        out.append(f"struct {p.name}_config : wq::{KINDS[p.kind][0]} {{")
        out += [f"    static const {t} {n} = {v};" for t, n, v in p.members]
        out += [f"    typedef {t} {n};" for n, t in p.types]
        if p.kind in ("conv2d", "dwconv", "dense"):
            out.append("    static_assert(weight_mem_bits == n_weights * w_bits,"
                       ' "weight memory must hold exactly w_bits a weight");')
        for pre in sorted({n[:-len("_shift_lo")] for _, n, _ in p.members if n.endswith("_shift_lo")}):
            # the shift range is ruled in Python (hls.cost.requant_range) and in C++ (wq::rq_range)
            ob = "align_bits" if pre != "rq" else "out_bits"
            out.append(f"    static_assert({pre}_shift_lo == wq::rq_range<{pre}_bits, {ob}>::lo && "
                       f"{pre}_shift_hi == wq::rq_range<{pre}_bits, {ob}>::hi,"
                       ' "requant shift range: hls/cost.py and wq_requant.h disagree");')
        out += ["};", ""]
    caps = "WQ_CAP_RUNTIME_WEIGHTS | WQ_CAP_LOGITS | WQ_CAP_BATCH" + (" | WQ_CAP_FEATURES" if features else "")
    max_reply = max(len(S.QUERY_FIELDS), 1 + n_classes + n_feat, 2)
    rec = S.record_words(n_classes, n_feat)
    max_b = batch.max_batch(n_classes, n_feat, h * w * c)
    packs = batch.packings(c, in_bits)
    pack_names = " | ".join(f"(1u << WQ_PACK_{k})" for k, v in S.PACKINGS.items() if packs >> v & 1)
    out += ["struct top_config : wq::core_config {",
            f"    static const unsigned topology_hash = 0x{meta['topology_hash']:08x}u;",
            f"    static const unsigned core_version = {CORE_VERSION};",
            f"    static const unsigned in_h = {h};",
            f"    static const unsigned in_w = {w};",
            f"    static const unsigned in_c = {c};",
            f"    static const unsigned in_bits = {in_bits};",
            f"    typedef ap_uint<{in_bits}> code_t;",
            f"    static const unsigned n_pixels = {h * w * c};",
            f"    static const unsigned infer_words = {S.infer_words(h * w * c)};",
            f"    static const unsigned n_classes = {n_classes};",
            f"    static const unsigned blob_words = {meta['blob_words']};",
            f"    static const unsigned max_reply_words = {max_reply};",
            f"    static const unsigned capabilities = {caps};",
            f"    static const unsigned feature_words = {n_feat};",
            f"    static const unsigned feature_alloc = {max(1, n_feat)};",
            f"    static const unsigned die2_words = {S.image_words(h * w * c, S.PACK_DIE2)};",
            f"    static const unsigned record_words = {rec};",
            f"    static const unsigned max_batch = {max_b};",
            f"    static const unsigned result_words = {max_b * rec};",
            f"    static const unsigned packings = {pack_names};",
            "};", "", "#endif  // WQ_CONFIG_H", ""]
    return "\n".join(out)
