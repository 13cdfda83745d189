"""Requantization narrowed to the bits it needs (issue 16): wq_requant.h's
requant_w<IN_W, OUT_BITS, UNSIGNED> works on the layer's own width and clamps
the run-time shift to hls.cost.requant_range before its shifters; every
int32 shift, inside the range, at its edges and far outside, gives the exact
answer (tests/test_blob_ranges.exact), for every value an IN_W-bit signed
accumulator can hold."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from hls import cost as C
from test_blob_ranges import INT_MAX, INT_MIN, TEMPLATES, _ap_types, exact

# (IN_W, OUT_BITS, UNSIGNED_OUT): a quant of a 4-bit code, an add's alignment,
# a GAP sum, conv accumulators with their int32 bias (33 and 41 bits), 16-bit out
CASES = [(5, 4, True), (9, 8, False), (10, 2, False), (12, 4, True), (33, 4, True), (41, 4, False),
         (41, 8, True), (20, 16, False), (3, 1, True)]


def _accs(w: int) -> list[int]:
    lo, hi = -2 ** (w - 1), 2 ** (w - 1) - 1
    if w <= 12:
        return list(range(lo, hi + 1))               # every value
    vals = {lo, lo + 1, hi, hi - 1, 0, 1, -1, 2, -2, 3, -3}
    for k in range(1, w - 1):                        # ties and their neighbours at every shift
        for base in (2 ** k, 3 * 2 ** (k - 1), 5 * 2 ** (k - 1)):
            for d in (-1, 0, 1):
                vals |= {v for v in (base + d, -base + d) if lo <= v <= hi}
    return sorted(vals)


def _shifts(w: int, out_bits: int) -> list[int]:
    lo, hi = C.requant_range(w, out_bits)
    return [INT_MIN, INT_MIN + 1, -2 ** 20, *range(lo - 3, hi + 4), 2 ** 20, INT_MAX]


def test_range_edges_give_what_any_shift_beyond_gives():
    """Shifts past the range change nothing: the rule the core's clamp relies on."""
    for w, ob, u in CASES:
        lo, hi = C.requant_range(w, ob)
        for a in _accs(w):
            at_lo, at_hi = exact(a, lo, ob, u), exact(a, hi, ob, u)
            assert at_hi == 0, (w, ob, a)
            for s in (lo - 1, lo - 2, -100):
                assert exact(a, s, ob, u) == at_lo, (w, ob, u, a, s)
            for s in (hi + 1, hi + 2, 100):
                assert exact(a, s, ob, u) == at_hi, (w, ob, u, a, s)
        # the right edge is tight: one shift less, some value is not 0 yet (the left
        # edge is the reference's own cap, rshift_rhe's out_bits + 1)
        assert any(exact(a, hi - 1, ob, u) != 0 for a in _accs(w)), (w, ob)


def test_narrow_requant_is_exact_for_every_shift(tmp_path):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    parts, want = [], []
    for i, (w, ob, u) in enumerate(CASES):
        accs, shifts = _accs(w), _shifts(w, ob)
        arr = lambda xs: "{" + ", ".join(f"{x}LL" for x in xs) + "}"
        parts.append(f"static const long long A{i}[] = {arr(accs)};\n"
                     f"static const long long S{i}[] = {arr(shifts)};\n")
        parts.append(f"void run{i}() {{\n"
                     f"    for (unsigned a = 0; a < {len(accs)}; a++) for (unsigned s = 0; s < {len(shifts)}; s++)\n"
                     f"        std::printf(\"%d\\n\", wq::requant_w<{w}, {ob}, {str(u).lower()}>("
                     f"ap_int<{w}>(A{i}[a]), wq::shift_t(S{i}[s])).to_int());\n}}\n")
        want += [exact(a, s, ob, u) for a in accs for s in shifts]
    src = tmp_path / "rq.cpp"
    src.write_text('#include <cstdio>\n#include "wq_requant.h"\n' + "".join(parts)
                   + "int main() {\n" + "".join(f"    run{i}();\n" for i in range(len(CASES)))
                   + "    return 0;\n}\n")
    exe = tmp_path / "rq"
    subprocess.run([gxx, "-O1", "-std=c++14", "-w", f"-I{_ap_types()}", f"-I{TEMPLATES}", str(src), "-o", str(exe)],
                   check=True, capture_output=True, timeout=600)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, check=True)
    got = [int(v) for v in run.stdout.split()]
    assert len(got) == len(want)
    bad = [i for i, (g, x) in enumerate(zip(got, want)) if g != x]
    assert not bad, (len(bad), bad[:5])


def test_requant_lut_by_hand():
    """A W4A4 conv's requant (41-bit accumulator with its int32 bias, 4-bit out),
    counted stage by stage as requant_lut's docstring states."""
    w, kept = 42, 6
    shared = 32 + 6 + 2 * 42                            # two 32-bit compares, 6-bit amount, 2 decoders
    rounding = 14 + 42                                  # odd bit mux, adder
    shifter = 37 + 21 + 13 + 9 + 7 + 6                  # stages 32, 16, 8, 4, 2, 1, trimmed
    overflow = 21 + 7                                   # bit tests, OR
    left = 2 * 21 + 12 * 3                              # pre-clamp, 12-bit shifter, 3 stages
    clamp = 12 + 6 + 8
    lane = rounding + shifter + overflow + left + clamp
    assert C.requant_lut(41, 4) == shared + lane == 403
    assert C.requant_lut(41, 4, 8) == shared + 8 * lane
    assert sum(min(w, kept + (1 << k) - 1) for k in range(6)) == shifter
    # the shifter follows the width: a 9-bit quant input needs 4 stages, not a 64-bit one's 6
    assert C.requant_lut(9, 4) < C.requant_lut(17, 4) < C.requant_lut(41, 4) < C.requant_lut(62, 4)
    assert C.requant_range(41, 4) == (-5, 41)
