"""Synthesizability rules for the HLS sources: what Vitis HLS cannot map to
hardware must not appear in the templates or the generated top.

The harness (csim_api.cpp) is C-sim only and is not scanned.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hls import parallel
from hls.generate import generate
from contract.intmodel import random_model
from contract.spec import CNNSpec
from contract.zoo import buffer_spec

TEMPLATES = Path(__file__).resolve().parents[1] / "hls" / "templates"

FORBIDDEN = [
    (r"\b(malloc|calloc|realloc|free)\s*\(", "heap allocation"),
    (r"\bnew\b|\bdelete\b", "new/delete"),
    (r"\bstd::(vector|map|multimap|unordered_map|set|unordered_set|list|forward_list|string|"
     r"deque|queue|priority_queue|stack|array)\b", "std:: container"),
    (r"#\s*include\s*<(vector|map|set|list|string|deque|queue|stack|unordered_map|array)>",
     "std container header"),
    (r"\b(printf|fprintf|sprintf|puts|cout|cerr|fopen|fclose|FILE)\b", "console or file I/O"),
    (r"#\s*include\s*<(iostream|fstream|sstream|cstdio|stdio\.h)>", "I/O header"),
    (r"\b(throw|try|catch)\b", "exceptions"),
]
_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "catch"}
_FUNC_DEF = re.compile(r"\b([A-Za-z_]\w*)\s*\(([^;{}]*?)\)\s*(?:const\s*)?\{")


def strip_comments(text: str) -> str:
    """Drop comments and string literals, keeping line numbers."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"', blank, text, flags=re.S)


def _body(code: str, open_brace: int) -> str:
    depth = 0
    for i in range(open_brace, len(code)):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        if depth == 0:
            return code[open_brace + 1:i]
    return code[open_brace + 1:]


def find_violations(text: str) -> list[str]:
    """Every forbidden construct in one C++ source, as 'line N: what'."""
    code = strip_comments(text)
    found = []
    for pattern, what in FORBIDDEN:
        for m in re.finditer(pattern, code):
            found.append(f"line {code.count(chr(10), 0, m.start()) + 1}: {what} ({m.group(0).strip()})")
    # Recursion, the direct kind: a function body that calls its own name.
    for m in _FUNC_DEF.finditer(code):
        name = m.group(1)
        if name in _KEYWORDS:
            continue
        if re.search(rf"(?<![\w.>:]){re.escape(name)}\s*(<[^;{{}}()]*>)?\s*\(", _body(code, m.end() - 1)):
            found.append(f"line {code.count(chr(10), 0, m.start()) + 1}: recursion in {name}()")
    return found


# One template a layer kind, plus the shared parts.
LAYER_TEMPLATES = ("wq_conv2d.h", "wq_dwconv.h", "wq_dense.h", "wq_maxpool.h", "wq_gap.h",
                   "wq_add.h", "wq_upsample.h", "wq_requant.h")


@pytest.fixture(scope="module", params=["wmcnn", "xception_fpn", "imported"])
def generated(request, tmp_path_factory) -> Path:
    """A chain (the slice's CNN), a graph with every layer kind (adds,
    upsampling, depthwise, GAP), the latter folded and with the feature reply,
    and an imported graph (non-square 2-bit input, 1-bit weights, threshold
    layers, folded)."""
    base = tmp_path_factory.mktemp("rules")
    if request.param == "imported":
        from contract.graph import GraphBuilder
        from contract.graphspec import GraphSpec

        g = GraphBuilder(9, 2, 2, in_w=7)
        g.conv("c0", 4, 3, pad=0, w_bits=1, a_bits=2, thresholds=True)
        g.dense("d0", 8, w_bits=1, a_bits=1, thresholds=True)
        g.dense("out", 3, w_bits=2, logits=True)
        spec = GraphSpec("imp", 9, 7, 2, ("a", "b", "c"), tuple(g.layers), in_bits=2)
        random_model(spec).save(base / "export")
        (base / "hls").mkdir()
        parallel.save(base / "hls" / "parallel.json", {"c0": {"pe": 2, "simd": 6}})
        fw = generate(base / "export", base / "hls")
        assert "load_threshold_word<c0_config>" in (fw / "waferq_top.cpp").read_text()
        return fw
    if request.param == "wmcnn":
        spec = CNNSpec.uniform(4, 4, in_size=16, channels=(2, 3))
        random_model(spec).save(base / "export")
        return generate(base / "export", base / "hls")
    spec = buffer_spec(in_size=16, width=2)
    random_model(spec).save(base / "export")
    (base / "hls").mkdir()
    parallel.save(base / "hls" / "parallel.json", {"cam": {"pe": 4, "simd": 8}, "stem1": {"pe": 2, "simd": 3}})
    return generate(base / "export", base / "hls", features=True)


def _scanned(fw: Path) -> list[Path]:
    return sorted(TEMPLATES.glob("*.h")) + [fw / "waferq_top.cpp", fw / "wq_config.h"]


def test_templates_exist():
    names = {p.name for p in TEMPLATES.glob("*.h")}
    assert {"wq_common.h", "wq_core.h", "wq_loader.h", *LAYER_TEMPLATES} <= names


@pytest.mark.parametrize("name", LAYER_TEMPLATES)
def test_layer_templates_pipeline_and_unroll(name):
    """Every layer template pipelines its fold loop and unrolls its PE (and SIMD)
    loops; the weighted ones partition the weight memory and accumulators by PE."""
    text = strip_comments((TEMPLATES / name).read_text())
    if name in ("wq_conv2d.h", "wq_dwconv.h", "wq_dense.h"):
        # their fold loop is the shared matrix-vector unit's
        raw = (TEMPLATES / name).read_text()
        assert '#include "wq_mvau.h"' in raw or '#include "wq_conv2d.h"' in raw
        text += strip_comments((TEMPLATES / "wq_mvau.h").read_text())
    assert "#pragma HLS PIPELINE II = 1" in text
    if name != "wq_requant.h" or "void quant(" in text:
        assert "#pragma HLS UNROLL" in text
    if name in ("wq_conv2d.h", "wq_dwconv.h", "wq_dense.h"):
        assert "#pragma HLS ARRAY_PARTITION variable=w complete dim=1" in text
        if name != "wq_dwconv.h":  # one threshold bank a comparator (wq_loader.h)
            assert "#pragma HLS ARRAY_PARTITION variable=thr complete dim=1" in text
        assert "#pragma HLS ARRAY_PARTITION variable=acc complete" in text
        assert "CONFIG_T::simd" in text and "CONFIG_T::pe" in text


def test_config_structs_document_their_members():
    """Each base config struct's members carry a one-line comment."""
    for name in LAYER_TEMPLATES:
        lines = (TEMPLATES / name).read_text().splitlines()
        for line in lines:
            if re.match(r"\s*static const (unsigned|bool) \w+ = ", line) and "_config" not in line:
                if re.search(r"\b(PE|SIMD|SF|C|Q|S|F|NPIX|IC|OC|HI|LO|MAX_\w+|CHUNK|N_CHUNKS)\b =", line):
                    continue  # derived constants inside functions
                assert "//" in line, f"{name}: undocumented member: {line.strip()}"


def _region_body(top: str) -> list[str]:
    """The statements of the Images loop (the DATAFLOW region)."""
    body = top[top.index("Images:"):]
    body = body[body.index("{") + 1:]
    depth, end = 1, 0
    for i, ch in enumerate(body):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            end = i
            break
    return [l.strip() for l in body[:end].splitlines() if l.strip()]


def test_generated_region_is_canonical_dataflow(generated):
    """UG1399's canonical dataflow-in-a-loop: the loop counts from 0 by 1 to a
    function argument, the DATAFLOW pragma is inside it, and the body holds
    only local channel declarations and function calls; every channel array
    is written by one call and read by exactly one later call (a layer output
    that two layers read goes through a dup2 stage), and none is sized at run time."""
    top = strip_comments((generated / "waferq_top.cpp").read_text())
    assert re.search(r"Images:\s*for \(unsigned b = 0; b < n; b\+\+\) \{\s*#pragma HLS DATAFLOW", top)
    assert re.search(r"static void run_images\([^)]*const unsigned n,", top)
    lines = _region_body(top)
    arrays, calls = [], []
    for line in lines:
        if m := re.fullmatch(r"WQ_PIPO [\w<>:, ]+ (\w+)\[(\w+(?:::\w+)?)\];", line):
            assert re.fullmatch(r"\d+|top_config::n_pixels", m.group(2)), line
            arrays.append(m.group(1))
        elif re.fullmatch(r"wq::\w+(<.*>)?\(.*\);", line):
            calls.append(line)
        else:
            assert re.fullmatch(r"#pragma HLS .*|WQ_(MEM|FIFO)\(.*\);|WQ_LAYER\(\w+\);|wq::rx_ctl ctl;", line), line
    assert "static" not in " ".join(lines)
    assert calls[0].startswith("wq::source<") and calls[-1].startswith("wq::sink")
    cfg = (generated / "wq_config.h").read_text()
    layers = [n for n in re.findall(r"^struct (\w+)_config : wq::", cfg, re.M) if n != "top"]
    assert len(layers) >= 3 and {f"{n}_out" for n in layers} <= set(arrays)
    for a in arrays:
        users = [i for i, c in enumerate(calls) if re.search(rf"\b{a}\b", c)]
        assert len(users) == 2, (a, users)
    # a copy for each reader of a branch point
    if "entry_add" in layers:
        assert any(c.startswith("wq::dup2<") for c in calls)
    # a FIFO channel: the STREAM pragma and its cycle C-sim check go together,
    # and it is read by the very next call
    fifos = re.findall(r"#pragma HLS STREAM variable=(\w+) type=fifo depth=(\d+)", "\n".join(lines))
    assert set(re.findall(r"WQ_FIFO\((\w+)\);", "\n".join(lines))) == {a for a, _ in fifos}
    for a, _ in fifos:
        users = [i for i, c in enumerate(calls) if re.search(rf"\b{a}\b", c)]
        assert users[1] == users[0] + 1, a


def test_no_forbidden_constructs(generated):
    problems = {p.name: v for p in _scanned(generated) if (v := find_violations(p.read_text()))}
    assert not problems, problems


def test_pragmas_and_top_interfaces(generated):
    texts = [strip_comments(p.read_text()) for p in _scanned(generated)]
    assert any("#pragma HLS" in t for t in texts)
    top = strip_comments((generated / "waferq_top.cpp").read_text())
    assert re.search(r"#pragma HLS INTERFACE axis port=rx\b", top)
    assert re.search(r"#pragma HLS INTERFACE axis port=tx\b", top)
    # hls::axis, so that Vitis makes TLAST/TKEEP/TSTRB side channels (UG1399)
    port = "hls::stream<hls::axis<ap_uint<32>, 0, 0, 0> >"
    assert f"void waferq_top({port}& rx, {port}& tx)" in top
    assert re.search(r"#pragma HLS reset variable=state\b", top)
    # the reply's side channels: every beat written through axis_beat, TLAST on the checksum
    core = strip_comments((TEMPLATES / "wq_core.h").read_text())
    assert "tx.write(axis_beat(sum, true))" in core
    assert not re.search(r"tx\.write\((?!axis_beat\()", core)


def test_loops_carry_labels():
    # Loops in the templates have labels so synthesis reports name them.
    for p in TEMPLATES.glob("*.h"):
        lines = strip_comments(p.read_text()).splitlines()
        for i, line in enumerate(lines):
            if re.match(r"\s*(for|while)\s*\(", line):
                assert re.match(r"\s*\w+:\s*$", lines[i - 1]), f"{p.name}:{i + 1}: loop without a label"


@pytest.mark.parametrize("snippet,what", [
    ("void f() { int* p = (int*)malloc(4); }", "heap allocation"),
    ("void f() { int* p = new int[4]; delete[] p; }", "new/delete"),
    ("#include <vector>\nstd::vector<int> v;", "std:: container"),
    ("void f() { std::string s; }", "std:: container"),
    ('void f() { printf("x"); }', "console or file I/O"),
    ("void f() { std::cout << 1; }", "console or file I/O"),
    ("void f() { FILE* fp = fopen(0, 0); }", "console or file I/O"),
    ("void f(int x) { if (x) throw 1; }", "exceptions"),
    ("int fact(int n) {\n  if (n < 2) return 1;\n  return n * fact(n - 1);\n}", "recursion"),
    ("template <class T> T g(T n) { return n ? g<T>(n - 1) : n; }", "recursion"),
])
def test_checker_flags_bad_code(snippet, what):
    assert any(what in v for v in find_violations(snippet)), find_violations(snippet)


def test_checker_passes_clean_code_and_comments():
    ok = """// we never call malloc or printf here, nor recurse
    /* new and delete are fine in comments */
    int g(int x) { return x + 1; }
    int f(int x) { for (int i = 0; i < 4; i++) { x = g(x); } return x; }
    const char* s = "printf";"""
    assert find_violations(ok) == []
