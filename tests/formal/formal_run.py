"""Run the formal property wrappers in tests/formal/ with Debian's yosys (0.23) and ABC.

Each check reads the unmodified RTL and one wrapper with ``read_verilog -formal``, with one
property group enabled by a define (P_STABLE, P_ORDER, ...). After ``flatten`` the
module's Verilog initialisers are removed (``setattr -unset init w:dut.*``), so every
register of the RTL starts from an arbitrary value and only the reset brings it to order.
Engines:

- ``prove``: ``sat -tempinduct``; where induction does not close within a few steps, the
  design goes to ABC ``pdr`` (through ``write_aiger -zinit``: uninitialised flip-flops get
  a free initial value, x constants become free inputs);
- ``bmc``: ABC ``bmc3 -F N``: the property holds in every cycle of every trace of N
  cycles from reset (the frame integrity check: neither induction nor pdr closes it, the
  model's and the guard's checksum adders make it hard);
- ``known``: ``sat -seq N -set-init-undef -enable_undef``: initial state X, and the
  properties (``!== 1'bx``) say that no output is X after reset.

A failure returns the trace (yosys's table of inputs and registers per cycle).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RTL_DIR = REPO / "zybo_z7" / "rtl"
FORMAL_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Check:
    name: str
    wrapper: str       # file in tests/formal
    top: str           # wrapper module
    sources: tuple     # RTL files in zybo_z7/rtl
    define: str        # property group
    engine: str        # prove | bmc | known
    depth: int


CSR = ("csr_props.sv", "formal_wq_csr", ("wq_csr.v",))
GUARD = ("guard_props.sv", "formal_wq_frame_guard", ("wq_frame_guard.v",))
GLUE = ("glue_props.sv", "formal_wq_glue_top", ("wq_frame_guard.v", "wq_csr.v", "wq_glue_top.v"))

CHECKS = {c.name: c for c in (
    Check("csr_stable", *CSR, "P_STABLE", "prove", 6),
    Check("csr_order", *CSR, "P_ORDER", "prove", 6),
    Check("csr_write", *CSR, "P_WRITE", "prove", 6),
    Check("csr_reset", *CSR, "P_RESET", "prove", 6),
    Check("csr_known", *CSR, "P_KNOWN", "known", 8),
    Check("guard_stable", *GUARD, "P_STABLE", "prove", 6),
    Check("guard_reset", *GUARD, "P_RESET", "prove", 6),
    Check("guard_soft_reset", *GUARD, "P_SOFT_RESET", "prove", 6),
    Check("guard_known", *GUARD, "P_KNOWN", "known", 8),
    Check("guard_frame", *GUARD, "P_FRAME", "bmc", 12),
    Check("glue_reset", *GLUE, "P_RESET", "prove", 6),
)}

# output -> the inputs its combinational cone may reach (everything else must go
# through a flip-flop): no VALID or data output depends on its READY
COMB = {
    "wq_frame_guard": {"m_axis_tvalid": (), "m_axis_tdata": (), "m_axis_tlast": (),
                       "s_axis_tready": ("soft_reset",)},
    "wq_csr": {o: () for o in ("s_axil_awready", "s_axil_wready", "s_axil_bvalid",
                               "s_axil_bresp", "s_axil_arready", "s_axil_rvalid",
                               "s_axil_rdata", "s_axil_rresp")},
}

FF_CELLS = "$dff,$sdff,$dffe,$sdffe,$sdffce,$adff,$adffe,$aldff,$dffsr"


class FormalError(RuntimeError):
    pass


def tools_missing() -> str | None:
    for tool in ("yosys", "yosys-abc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install yosys)"
    return None


def _include(work: Path) -> Path:
    from zybo_z7 import csr_map

    inc = work / "include"
    csr_map.write(inc)
    return inc


def _yosys(script: str, work: Path, timeout=600) -> str:
    proc = subprocess.run(["yosys", "-p", script], capture_output=True, text=True,
                          cwd=work, timeout=timeout)
    log = proc.stdout + proc.stderr
    if "ERROR:" in log:
        raise FormalError(log[-3000:])
    return log


def _trace(log: str) -> str:
    """The counterexample table yosys prints (last one in the log)."""
    start = log.rfind("Time Signal")
    if start < 0:
        return "(no trace printed)"
    lines = [l for l in log[start:].splitlines()
             if not l.startswith(("Dumping", "End of", "Yosys", "Time spent"))]
    return "\n".join(lines).strip()


def _read(check: Check, rtl_dir: Path, inc: Path) -> str:
    src = " ".join(str(Path(rtl_dir) / s) for s in check.sources)
    return (f"read_verilog -formal -D{check.define} -I{inc} {src} {FORMAL_DIR / check.wrapper}; "
            f"prep -top {check.top}; memory_map; opt -fast; flatten; "
            f"setattr -unset init w:dut.*; opt_clean; ")


def run_check(check: Check, rtl_dir: Path = RTL_DIR) -> tuple[bool, str]:
    """(passed, report); on a failure the report holds the trace."""
    with tempfile.TemporaryDirectory(prefix="wq_formal_") as tmp:
        work = Path(tmp)
        inc = _include(work)
        read = _read(check, rtl_dir, inc)
        show = "-show-inputs -show-regs"
        if check.engine == "bmc":
            out = _abc(read, work, f"bmc3 -F {check.depth}")
            if "asserted in frame" not in out:
                if f"No output asserted in {check.depth} frames" not in out:
                    raise FormalError(f"bmc3 gave no verdict:\n{out[-2000:]}")
                return True, f"no counterexample in {check.depth} cycles (ABC bmc3)"
            return False, _counterexample(read, work, out, show)
        if check.engine == "known":
            log = _yosys(read + f"sat -seq {check.depth} -prove-asserts -set-assumes "
                         f"-set-init-undef -enable_undef -set-def-inputs {show}", work)
            ok = "SUCCESS!" in log
            return ok, f"no X to depth {check.depth}" if ok else _trace(log)
        log = _yosys(read + f"sat -tempinduct -prove-asserts -set-assumes "
                     f"-maxsteps {check.depth} {show}", work)
        if "model found for base case: FAIL!" in log:
            return False, _trace(log)
        if "Induction step proven: SUCCESS!" in log:
            return True, "proved by k-induction"
        # induction did not close: ABC pdr
        out = _abc(read, work, "pdr -T 300")
        if "Property proved" in out:
            return True, "proved by ABC pdr"
        if "asserted in frame" not in out:
            raise FormalError(f"pdr gave no verdict:\n{out[-2000:]}")
        return False, _counterexample(read, work, out, show)


def _abc(read: str, work: Path, command: str) -> str:
    """Write the design as AIGER (assumptions as constraints) and run one ABC command."""
    aig = work / "model.aig"
    _yosys(read + "async2sync; dffunmap; techmap; opt -fast; dffunmap; "
           "setundef -undriven -anyseq; setundef -anyseq; aigmap; opt_clean; "
           f"write_aiger -zinit {aig}", work)
    proc = subprocess.run(["yosys-abc", "-c", f"read_aiger {aig}; fold; strash; {command}"],
                          capture_output=True, text=True, timeout=900)
    return proc.stdout + proc.stderr


def _counterexample(read: str, work: Path, abc_out: str, show: str) -> str:
    """ABC found a failing frame: replay that depth with yosys sat to print the trace."""
    frame = int(re.search(r"asserted in frame (\d+)", abc_out).group(1))
    log = _yosys(read + f"sat -seq {frame + 2} -prove-asserts -set-assumes {show}", work)
    return f"ABC: counterexample in frame {frame}\n{_trace(log)}"


def comb_paths(module: str, rtl_dir: Path = RTL_DIR) -> dict[str, list[str]]:
    """For each checked output, the inputs its combinational cone reaches but may not."""
    with tempfile.TemporaryDirectory(prefix="wq_formal_") as tmp:
        work = Path(tmp)
        inc = _include(work)
        sources = {"wq_frame_guard": "wq_frame_guard.v", "wq_csr": "wq_csr.v"}
        bad = {}
        for out, allowed in COMB[module].items():
            log = _yosys(f"read_verilog -I{inc} {Path(rtl_dir) / sources[module]}; "
                         f"prep -top {module}; flatten; opt; "
                         f"select -list o:{out} %ci*:-{FF_CELLS} i:* %i", work)
            tail = log[log.rfind("select -list"):]
            reached = re.findall(rf"^{module}/(\S+)$", tail, re.M)
            extra = sorted(set(reached) - set(allowed))
            if extra:
                bad[out] = extra
        return bad
