"""``waferq_top.cpp``: parameter memories, the LOAD_WEIGHTS router and the
INFER data flow of one model, from the plan of ``hls.gen_config``.

Inference is one DATAFLOW region an image (the Images loop of
``run_images``): a source stage (the image from the stream or the INFER
buffer), one stage a layer, and a sink stage (logits, class, feature map, the
record). Activations travel in one local array per layer output (HWC, sized
from the layer's shape), a ping-pong buffer between two stages; a layer
output that two stages read (a residual add, the FPN merge, the feature map)
is copied by a dup2 stage, since a channel has one reader.
"""
from __future__ import annotations

from contract.graph import INPUT, is_threshold, shift_names

from hls.gen_config import KINDS, LayerPlan, partition


# The type of the top's rx and tx ports: Vitis HLS makes TLAST/TKEEP/TSTRB
# side channels only from hls::axis members (hls/templates/wq_axis.h).
AXIS_PORT = "hls::stream<hls::axis<ap_uint<32>, 0, 0, 0> >"


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


def _readers(plans: list[LayerPlan], feature: dict | None) -> dict[str, list[str]]:
    """Who reads each array: the consumers' names (``sink`` for the feature map)."""
    readers: dict[str, list[str]] = {INPUT: []}
    for p in plans:
        readers[p.name] = []
    for p in plans:
        for i in p.layer["inputs"]:
            readers[i].append(p.name)
    if feature is not None:
        readers[feature["name"]].append("sink")
    return readers


def _array(name: str, ctype: str, size: int, factor: int, fifo_depth: int = 0) -> list[str]:
    """A channel of the region: a local array, a ping-pong buffer in synthesis,
    or a FIFO of ``fifo_depth`` a bank where its two stages access it in order
    (WQ_PIPO makes it static in a C-sim, off the caller's thread stack)."""
    out = [f"WQ_PIPO {ctype} {name}[{size}];"]
    if factor > 1:
        out += [f"#pragma HLS ARRAY_PARTITION variable={name} cyclic factor={factor}",
                f"WQ_MEM({name}, WQ_CYCLIC, {factor});"]
    else:
        out.append(f"WQ_MEM({name}, WQ_BRAM, 0);")
    if fifo_depth:
        out += [f"#pragma HLS STREAM variable={name} type=fifo depth={fifo_depth}", f"WQ_FIFO({name});"]
    return out


def reads_in_order(p: LayerPlan) -> bool:
    """Whether a layer's template reads its input array(s) once, wholly, in
    index order (a run of in_lanes a cycle): what a FIFO channel needs. The
    cycle-accounting C-sim checks it on every FIFO (hls.cycles fifo_errors).
    A conv or pool that drops the bottom rows (floor) leaves them unread; a
    dense layer reads its input once per output group, upsample each code
    factor**2 times, and a GAP with several channel groups each group over all
    pixels."""
    L = p.layer
    if p.kind in ("conv2d", "dwconv"):
        return (L["out_h"] - 1) * L["stride"] + L["kernel"] - L["pad"] >= L["in_h"]
    if p.kind == "maxpool":
        return all((L[f"out_{d}"] - 1) * L["stride"] + L["pool"] == L[f"in_{d}"] for d in "hw")
    if p.kind == "gap":   # channel group by channel group, each over every pixel
        return p.pe == L["in_c"]
    return p.kind in ("add", "quant")


def fifo_depth(p: LayerPlan, factor: int) -> int:
    """Depth a bank of a FIFO channel out of layer ``p``: two of its output
    rows, so that it can run a row ahead of a line-buffered reader."""
    L = p.layer
    row = L["out_features"] if L["type"] == "dense" else L["out_w"] * L["out_c"]
    return max(2, -(-2 * row // factor))


def region(plans: list[LayerPlan], feature: dict | None) -> tuple[list[str], list[dict]]:
    """The body of the Images loop: source -> layers -> sink, one function call
    a stage, each channel written by one stage and read by one later stage
    (UG1399's canonical form): an array that two stages read is copied by a
    dup2 stage. Returns the lines and the channels, each ``{"array", "of"
    (the layer whose output it holds, or INPUT), "factor" (cyclic banks),
    "depth" (buffers), "fifo_depth"}``: a FIFO of ``fifo_depth`` codes a
    bank where the next stage alone reads it, in order; otherwise a ping-pong
    pair, or more buffers where the reader is several stages after the writer
    (a skip connection), so that the writer can go on with the next images."""
    readers = _readers(plans, feature)
    by_name = {p.name: p for p in plans}
    # a layer output read only by the next stage, which reads it in order: a FIFO
    fifo = {p.name for p in plans[:-1] if len(readers[p.name]) == 1 and readers[p.name][0] != "sink"
            and reads_in_order(by_name[readers[p.name][0]])
            and plans.index(by_name[readers[p.name][0]]) == plans.index(p) + 1}

    def factor(name: str) -> int:
        # the source writes 4 codes a cycle into the image; the sink packs 4
        # feature codes a word, and a dup2 copies at its arrays' factor
        f = partition(plans, name)
        return max(4, f) if name == INPUT or "sink" in readers[name] else f

    size = {INPUT: "top_config::n_pixels", **{p.name: str(p.out_size) for p in plans}}
    ctype = {INPUT: "top_config::code_t", **{p.name: p.out_t for p in plans}}
    out: list[str] = []
    chans: dict[str, dict] = {}
    stage = 0

    def declare(array: str, of: str) -> None:
        f = factor(of)
        depth = fifo_depth(by_name[of], f) if of in fifo else 0
        chans[array] = {"array": array, "of": of, "factor": f, "writer": stage, "depth": 2,
                        "fifo_depth": depth}
        out.extend(_array(array, ctype[of], size[of], f, depth))

    def call(line: str, reads: list[str]) -> None:
        nonlocal stage
        for r in reads:
            gap = stage - chans[r]["writer"]
            if gap > 1 and not chans[r]["fifo_depth"]:
                chans[r]["depth"] = gap + 1
                out.append(f"#pragma HLS STREAM variable={r} type=pipo depth={gap + 1}")
        out.append(line)
        stage += 1

    declare("img", INPUT)
    out.append("wq::rx_ctl ctl;")
    call("wq::source<top_config>(rx, from_rx, packing, b, start, image, img, ctl);", [])
    # the array each reader takes: the producer's, or its own copy
    src: dict[tuple[str, str], str] = {}

    def produced(name: str, buf: str) -> None:
        rs = readers[name]
        if len(rs) == 1:
            src[(name, rs[0])] = buf
            return
        # a chain of dup2 stages: copy k for reader k, the last reader takes the last copy
        cur = buf
        for k, r in enumerate(rs[:-1]):
            mine, rest = f"{buf}_to_{r}", f"{buf}_rest{k}" if k < len(rs) - 2 else f"{buf}_to_{rs[-1]}"
            out.append(f"WQ_LAYER({buf}_dup{k});")
            declare(mine, name)
            declare(rest, name)
            call(f"wq::dup2<{ctype[name]}, {size[name]}, {factor(name)}>({cur}, {mine}, {rest});", [cur])
            src[(name, r)] = mine
            cur = rest
        src[(name, rs[-1])] = cur

    produced(INPUT, "img")
    for p in plans:
        n, fn = p.name, KINDS[p.kind][1]
        ins = [src[(i, n)] for i in p.layer["inputs"]]
        declare(f"{n}_out", n)
        out.append(f"WQ_LAYER({n});")
        if p.kind in ("conv2d", "dense"):
            # A thresholds layer has no shift word; the others read no thresholds.
            act = f"wq::shift_t(0), {n}_thr" if is_threshold(p.layer) else f"{n}_s, wq::NO_THRESHOLDS"
            args = f"{ins[0]}, {n}_out, {n}_w, {n}_b, {act}"
        elif p.kind == "dwconv":
            args = f"{ins[0]}, {n}_out, {n}_w, {n}_b, {n}_s"
        elif p.kind in ("maxpool", "upsample"):
            args = f"{ins[0]}, {n}_out"
        elif p.kind == "add":
            args = f"{ins[0]}, {ins[1]}, {n}_out, {n}_shift"
        else:  # gap, quant
            args = f"{ins[0]}, {n}_out, {n}_s"
        call(f"wq::{fn}<{n}_config>({args});", ins)
        if p is not plans[-1]:
            produced(n, f"{n}_out")
    last = plans[-1].name
    if feature is not None:
        f = feature["name"]
        n = feature["out_h"] * feature["out_w"] * feature["out_c"]
        call(f"wq::sink_features<top_config, {last}_config, {n}, {ctype[f]}>("
             f"{last}_out, {src[(f, 'sink')]}, ctl, weights, b, results, last);", [f"{last}_out", src[(f, "sink")]])
    else:
        call(f"wq::sink<top_config, {last}_config>({last}_out, ctl, weights, b, results, last);", [f"{last}_out"])
    return out, [{k: c[k] for k in ("array", "of", "factor", "depth", "fifo_depth")} for c in chans.values()]


def _shift_scalars(plans: list[LayerPlan]) -> list[str]:
    """The one shift word a layer reads, as a scalar before the region: a stage
    takes variables, not expressions (UG1399 canonical form)."""
    out = []
    for p in plans:
        if p.kind in ("conv2d", "dense") and is_threshold(p.layer):
            continue
        if p.kind in ("conv2d", "dense", "dwconv", "gap", "quant"):
            out.append(f"const wq::shift_t {p.name}_s = WQ_AT({p.name}_shift, 0);")
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
        "    // n images through the network (n: 1 for an INFER, the batch size for",
        "    // INFER_BATCH), record b of image b into results. from_rx: the images",
        "    // come from the stream, else the INFER image is in image.",
        "    static void run_images(hls::stream<wq::axis_word>& rx, const unsigned n, const bool from_rx,",
        "                           const unsigned packing, const bool weights, const wq::rx_ctl& start,",
        "                           const top_config::code_t image[top_config::n_pixels],",
        "                           wq::word_t results[top_config::result_words], wq::rx_ctl& last) {",
        *[ind + line for line in _shift_scalars(plans)],
        "    Images:",
        "        for (unsigned b = 0; b < n; b++) {",
        "            #pragma HLS DATAFLOW",
        "            #pragma HLS LOOP_TRIPCOUNT min = 1 max = top_config::max_batch",
        *[ind + "    " + line for line in region(plans, feature)[0]],
        "        }",
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
