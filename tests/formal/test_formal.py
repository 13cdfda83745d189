"""Formal checks of the RTL glue (tests/formal/formal_run.py) and the mutants that must
fail them, so that no property can go vacuous. Needs Debian's yosys (with yosys-abc)."""
from __future__ import annotations

import shutil

import pytest

import formal_run as F

pytestmark = pytest.mark.skipif(F.tools_missing() is not None,
                                reason=F.tools_missing() or "")

# one-line mutants: (file, line as in the RTL, replacement, check that must fail)
MUTANTS = [
    ("wq_csr.v", "    if (write_hs) begin", "    if (write_offer) begin", "csr_order"),
    ("wq_csr.v", "    if (read_hs) begin", "    if (read_offer) begin", "csr_order"),
    ("wq_csr.v", "            WQ_CSR_TIMEOUT_CYCLES_ADDR: begin",
     "            WQ_CSR_SCRATCH_ADDR + 32'd4: begin", "csr_write"),
    ("wq_csr.v", "        bvalid_reg <= 1'b0;\n        arready_reg",
     "        arready_reg", "csr_known"),
    ("wq_frame_guard.v", "    if (m_axis_tready || !out_valid_reg) begin",
     "    if (1'b1) begin", "guard_stable"),
    ("wq_frame_guard.v", "            s_axis_tready_int = int_ready && !soft_reset;",
     "            s_axis_tready_int = int_ready;", "guard_soft_reset"),
    ("wq_frame_guard.v", "        out_valid_reg <= 1'b0;\n", "", "guard_reset"),
    ("wq_frame_guard.v", "        default: tail_word = sum_reg;",
     "        default: tail_word = sum_reg + 1'b1;", "guard_frame"),
    ("wq_frame_guard.v", "                    if (word_count_reg == 2) begin",
     "                    if (word_count_reg == 1) begin", "guard_frame"),
    ("wq_glue_top.v", "wire rst = !aresetn;", "wire rst = 1'b0;", "glue_reset"),
]


@pytest.mark.parametrize("name", list(F.CHECKS))
def test_property(name):
    ok, report = F.run_check(F.CHECKS[name])
    print(f"{name}: {report}")
    assert ok, f"{name} has a counterexample:\n{report}"


@pytest.mark.parametrize("module", list(F.COMB))
def test_no_combinational_valid_on_ready(module):
    assert F.comb_paths(module) == {}


@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{m[3]}-{i}" for i, m in enumerate(MUTANTS)])
def test_mutant_fails(mutant, tmp_path):
    src, old, new, check = mutant
    for f in F.RTL_DIR.glob("*.v"):
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / src).read_text()
    assert text.count(old) == 1, f"mutant line not found once in {src}: {old!r}"
    (tmp_path / src).write_text(text.replace(old, new))
    ok, report = F.run_check(F.CHECKS[check], rtl_dir=tmp_path)
    assert not ok, f"mutant {old!r} -> {new!r} passed {check}: the property is vacuous"
    assert "Time Signal" in report  # the trace is printed


def test_mutant_comb_path(tmp_path):
    for f in F.RTL_DIR.glob("*.v"):
        shutil.copy(f, tmp_path / f.name)
    p = tmp_path / "wq_frame_guard.v"
    old = "assign m_axis_tvalid = out_valid_reg;"
    p.write_text(p.read_text().replace(old, "assign m_axis_tvalid = out_valid_reg && m_axis_tready;"))
    assert F.comb_paths("wq_frame_guard", rtl_dir=tmp_path) == {"m_axis_tvalid": ["m_axis_tready"]}
