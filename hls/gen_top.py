"""``waferq_top.cpp``: parameter memories, the LOAD_WEIGHTS router and the
INFER data flow of one model, from the plan of ``hls.gen_config``.

Activations live in one static on-chip array per layer output (HWC, sized
statically from the layer's shape). A layer whose output feeds two later
layers (a residual add, the FPN merge) simply keeps its array: every array
lives for the whole call, so no liveness analysis is needed for correctness.
"""
from __future__ import annotations

from contract.graph import INPUT, is_threshold, shift_names

from hls.gen_config import KINDS, LayerPlan, partition


# The type of the top's rx and tx ports: Vitis HLS makes TLAST/TKEEP/TSTRB
# side channels only from hls::axis members (hls/templates/wq_axis.h).
AXIS_PORT = "hls::stream<hls::axis<ap_uint<32>, 0, 0, 0> >"


def _buf(name: str) -> str:
    return "image" if name == INPUT else f"{name}_out"


def _memories(plans: list[LayerPlan]) -> list[str]:
    out = []
    for p in plans:
        if not p.section_words:
            continue
        n = p.name
        if shift_names(p.layer):
            out.append(f"static wq::shift_t {n}_shift[{n}_config::n_shifts];")
        if is_threshold(p.layer):
            out.append(f"static wq::thr_t {n}_thr[{n}_config::thr_rows][{n}_config::thr_depth];")
        if p.kind in ("conv2d", "dwconv", "dense"):
            out += [f"static wq::bias_t {n}_b[{n}_config::n_out];",
                    f"// {p.layer['w_bits']}-bit weights, {p.simd} a word: "
                    f"{n}_config::weight_mem_bits bits in all.",
                    f"static {n}_config::wword_t {n}_w[{n}_config::pe][{n}_config::wwords];"]
    return out


def _registrations(plans: list[LayerPlan]) -> list[str]:
    out = []
    for p in plans:
        if not p.section_words:
            continue
        n = p.name
        if shift_names(p.layer):
            out.append(f"WQ_MEM({n}_shift, WQ_BRAM, 0);")
        if is_threshold(p.layer):
            out.append(f"WQ_MEM({n}_thr, WQ_ROWS, 0);")
        if p.kind in ("conv2d", "dwconv", "dense"):
            # b: cyclic by PE (the layer templates' pragma), so an output group's
            # PE biases are one read of each bank
            out += [f"WQ_MEM({n}_b, WQ_CYCLIC, {p.pe});", f"WQ_MEM({n}_w, WQ_ROWS, 0);"]
    return out


def _loader(plans: list[LayerPlan]) -> list[str]:
    out = []
    for p in [p for p in plans if p.section_words]:
        n = p.name
        kw = "if" if not out else "} else if"
        out.append(f"{kw} (index < {n}_config::blob_offset + {n}_config::section_words) {{")
        pos = f"index - {n}_config::blob_offset"
        if is_threshold(p.layer):
            out.append(f"    wq::load_threshold_word<{n}_config>(word, {pos}, {n}_b, {n}_thr, {n}_w);")
        elif p.kind in ("conv2d", "dwconv", "dense"):
            out.append(f"    wq::load_weighted_word<{n}_config>(word, {pos}, {n}_shift, {n}_b, {n}_w);")
        else:
            out.append(f"    wq::load_shift_word<{n}_config>(word, {pos}, {n}_shift);")
    if out:
        out.append("}")
    return out


def _dataflow(plans: list[LayerPlan], feature: dict | None) -> list[str]:
    out = []
    for p in plans:
        n, fn = p.name, KINDS[p.kind][1]
        src = [_buf(i) for i in p.layer["inputs"]]
        out.append(f"static {p.out_t} {n}_out[{p.out_size}];")
        f = partition(plans, n)
        if f > 1:
            out.append(f"#pragma HLS ARRAY_PARTITION variable={n}_out cyclic factor={f}")
            out.append(f"WQ_MEM({n}_out, WQ_CYCLIC, {f});")
        else:
            out.append(f"WQ_MEM({n}_out, WQ_BRAM, 0);")
        out.append(f"WQ_LAYER({n});")
        if p.kind in ("conv2d", "dense"):
            # A thresholds layer has no shift word; the others read no thresholds.
            act = f"wq::shift_t(0), {n}_thr" if is_threshold(p.layer) else \
                f"WQ_AT({n}_shift, 0), wq::NO_THRESHOLDS"
            call = f"{src[0]}, {n}_out, {n}_w, {n}_b, {act}"
        elif p.kind == "dwconv":
            call = f"{src[0]}, {n}_out, {n}_w, {n}_b, WQ_AT({n}_shift, 0)"
        elif p.kind in ("maxpool", "upsample"):
            call = f"{src[0]}, {n}_out"
        elif p.kind == "add":
            call = f"{src[0]}, {src[1]}, {n}_out, {n}_shift"
        else:  # gap, quant
            call = f"{src[0]}, {n}_out, WQ_AT({n}_shift, 0)"
        out.append(f"wq::{fn}<{n}_config>({call});")
    last = plans[-1].name
    out += ["WQ_LAYER(head);",
            "LogitsOut:",
            f"for (unsigned i = 0; i < {last}_config::n_out; i++) {{",
            "    #pragma HLS PIPELINE II = 1",
            "    WQ_PIPE(LogitsOut, 1, WQ_DEPTH);",
            f"    WQ_AT(logits, i) = WQ_AT({last}_out, i);  // wraps to int32",
            "}"]
    if feature is not None:
        f = feature["name"]
        n = feature["out_h"] * feature["out_w"] * feature["out_c"]
        out.append(f"wq::pack_codes<{n}, top_config::feature_words>({f}_out, features);")
    out.append(f"return wq::argmax<{last}_config>({last}_out);")
    return out


def top_source(plans: list[LayerPlan], feature: dict | None) -> str:
    ind = "        "
    return "\n".join([
        "// Generated by hls/generate.py from model.json. Do not edit.",
        "// Synthesis top of the waferq core: one request in, one reply out per call.",
        '#include "waferq_top.h"',
        '#include "wq_loader.h"',
        "",
        "// On-chip parameter memories, written by LOAD_WEIGHTS, read by INFER.",
        *_memories(plans),
        "",
        "#ifdef WQ_CYCLES",
        "// Their ports for the cycle-accounting C-sim (hls/cycles.py): the weight",
        "// memories are partitioned by PE (complete dim=1 in the layer templates),",
        "// the biases cyclically by PE.",
        *_registrations(plans),
        "#endif",
        "",
        "namespace {  // internal linkage: each generated core is self-contained",
        "",
        "struct model_impl {",
        "    // index: word of the weight blob; picks the layer section it belongs to.",
        "    static void load_word(wq::word_t word, wq::word_t index) {",
        "        #pragma HLS INLINE",
        *[ind + line for line in _loader(plans)],
        "    }",
        "",
        "    // image: HWC codes, in_bits each. Returns the class; logits get the int32",
        "    // values, features the packed feature map when top_config::feature_words > 0.",
        "    static wq::word_t infer(const top_config::code_t image[top_config::n_pixels],",
        "                            wq::logit_t logits[top_config::n_classes],",
        "                            wq::word_t features[top_config::feature_alloc]) {",
        *[ind + line for line in _dataflow(plans, feature)],
        "    }",
        "};",
        "",
        "// What survives between calls; zero (no weights loaded) at reset.",
        "static wq::core_state state;",
        "",
        "}  // namespace",
        "",
        f"void waferq_top({AXIS_PORT}& rx, {AXIS_PORT}& tx) {{",
        "    #pragma HLS INTERFACE axis port=rx",
        "    #pragma HLS INTERFACE axis port=tx",
        "    #pragma HLS INTERFACE s_axilite port=return bundle=control",
        "    // Statics keep their value through ap_rst_n unless they are named here",
        "    // (config_rtl -reset control, the default): the CSR soft reset must",
        "    // leave the core with no weights loaded.",
        "    #pragma HLS reset variable=state",
        "    wq::handle_message<top_config, model_impl>(rx, tx, state);",
        "}",
        "",
        "#ifdef WQ_CSIM_HARNESS",
        "// C-sim only (hls/csim.py): what ap_rst_n does to the variables named by",
        "// the reset pragmas above.",
        "void waferq_csim_reset_state() { wq::clear_state(state); }",
        "#endif",
        ""])
