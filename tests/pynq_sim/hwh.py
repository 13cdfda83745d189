"""A hardware handoff (.hwh) for the simulated board, written from the block design itself:
zybo_z7/vivado/block_design.tcl is run in tclsh (Vivado's commands as probes) to collect
its cells, their IP VLNVs, their CONFIG and the address map.

Vivado writes the real one next to the bitstream; where there is no Vivado,
``waferq.hwh`` (committed) stands in for it. It carries what pynq's .hwh parser reads to
bind drivers: modules with their parameters (the TCL's CONFIG, as Vivado's .hwh repeats
them in lower case for the DMA), AXI slave interfaces and the PS7 memory map. Vivado adds
parameters it derives; the ones pynq reads are derived here the same way and marked so.
It leaves out ports and nets (interrupts, clocks): the backend polls, so its DMA channels
get no interrupt either way. ``check_fixture`` keeps the committed file equal to what the
TCL gives now.

    PYTHONPATH=.:tests python -m pynq_sim.hwh > tests/pynq_sim/waferq.hwh
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from contract import board as board_facts
from zybo_z7 import board as board_files

REPO = Path(__file__).resolve().parents[2]
TCL = REPO / "zybo_z7" / "vivado" / "block_design.tcl"
FIXTURE = Path(__file__).with_name("waferq.hwh")

# Vivado commands as tclsh procs that print what the block design asks for (tab-separated);
# any other command (connect_bd_*, get_bd_*, ...) returns its arguments.
PROBE = r"""
proc create_bd_cell {args} {
    set name [lindex $args end]
    set i [lsearch -exact $args -vlnv]
    if {$i >= 0} { set vlnv [lindex $args [expr {$i + 1}]] }
    set i [lsearch -exact $args -reference]
    if {$i >= 0} { set vlnv "xilinx.com:module_ref:[lindex $args [expr {$i + 1}]]:1.0" }
    puts "CELL\t$name\t$vlnv"
    return $name
}
proc set_property {args} {
    if {[lindex $args 0] eq "-dict"} {
        foreach {k v} [lindex $args 1] { puts "PROP\t[lindex $args 2]\t$k\t$v" }
    }
}
proc assign_bd_address {args} {
    set o [lsearch -exact $args -offset]
    set r [lsearch -exact $args -range]
    if {$o >= 0} {
        set seg [lindex [lindex $args end] end]
        puts "ADDR\t$seg\t[lindex $args [expr {$o + 1}]]\t[lindex $args [expr {$r + 1}]]"
    }
}
proc unknown {args} { return $args }
"""


@dataclass
class Design:
    cells: dict  # name -> VLNV
    config: dict  # name -> {key without "CONFIG.": value}
    segments: dict  # "cell/interface/block" -> (base, range)


def tcl_design() -> Design:
    """Run block_design.tcl in tclsh, board_facts.tcl (from board.toml) sourced first."""
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        raise RuntimeError("tclsh is not installed (apt-get install tcl)")
    facts = board_files.tcl(board_facts.load(), {"wq_topology_hash": "0x00000000"})
    script = facts + PROBE + f"source {{{TCL}}}\n"
    out = subprocess.run([tclsh], input=script, capture_output=True, text=True, timeout=60,
                         check=True).stdout
    d = Design({}, {}, {})
    for line in out.splitlines():
        kind, *f = line.split("\t")
        if kind == "CELL":
            d.cells[f[0]] = f[1]
        elif kind == "PROP":
            d.config.setdefault(f[0], {})[f[1].removeprefix("CONFIG.")] = f[2]
        elif kind == "ADDR":
            d.segments[f[0]] = (int(f[1], 16), int(f[2], 16))
    return d


def _dma_parameters(config: dict) -> dict:
    """The DMA's CONFIG in lower case (as Vivado's .hwh lists them), plus the defaults of
    the options the block design leaves alone (PG021: no DRE, no micro DMA)."""
    params = {"c_include_mm2s_dre": "0", "c_include_s2mm_dre": "0", "c_micro_dma": "0"}
    params |= {k.lower(): v for k, v in config.items()}
    return params


def _ps7_parameters(config: dict) -> dict:
    """The PS7 CONFIG, plus what Vivado derives for FCLK0..3 and pynq reads: the enable, the
    IO-PLL divisors and the achieved rate (IO PLL 1000 MHz, as on the Zybo's 33.3 MHz
    crystal; a clock not enabled keeps Vivado's 10 MHz default)."""
    params = dict(config)
    for i in range(4):
        on = params.get(f"PCW_EN_CLK{i}_PORT") == "1"
        mhz = float(params.get(f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ", 10)) if on else 10.0
        div = round(1000 / mhz)
        div0, div1 = next((a, div // a) for a in range(min(div, 63), 0, -1) if div % a == 0)
        params |= {f"PCW_FPGA_FCLK{i}_ENABLE": str(int(on)),
                   f"PCW_FCLK{i}_PERIPHERAL_CLKSRC": "IO PLL",
                   f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0": str(div0),
                   f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1": str(div1),
                   f"PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ": f"{1000 / div:.6f}"}
    return params


def make_hwh(design: Design | None = None) -> str:
    d = design or tcl_design()
    slaves = {}  # cell -> (interface, block, base, range), from the PS7's Data space
    for seg, (base, rng) in d.segments.items():
        cell, itf, block = seg.split("/")
        slaves[cell] = (itf, block, base, rng)
    out = ['<?xml version="1.0" encoding="UTF-8" standalone="no" ?>',
           '<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="generated by tests/pynq_sim/hwh.py" '
           'VIVADOVERSION="none">',
           '  <SYSTEMINFO ARCH="zynq" DEVICE="7z020" NAME="waferq_bd" PACKAGE="clg400" '
           'SPEEDGRADE="-1"/>',
           '  <EXTERNALPORTS/>', '  <EXTERNALINTERFACES/>', '  <MODULES>']
    for name, vlnv in d.cells.items():
        _, _, modtype, version = vlnv.split(":")
        is_ps = modtype == "processing_system7"
        out.append(f'    <MODULE FULLNAME="/{name}" HWVERSION="{version}" INSTANCE="{name}" '
                   f'IPTYPE="PERIPHERAL" IS_ENABLE="1" MODCLASS="PERIPHERAL" MODTYPE="{modtype}" '
                   f'VLNV="{vlnv}"' + (' IS_PL="FALSE">' if is_ps else '>'))
        config = d.config.get(name, {})
        params = {"Component_Name": f"waferq_bd_{name}_0", "EDK_IPTYPE": "PERIPHERAL"}
        if modtype == "axi_dma":
            params |= _dma_parameters(config)
        elif is_ps:
            params |= _ps7_parameters(config)
        else:
            params |= config
        out.append("      <PARAMETERS>")
        out += [f"        <PARAMETER NAME={quoteattr(k)} VALUE={quoteattr(str(v))}/>"
                for k, v in params.items()]
        out.append("      </PARAMETERS>")
        if name in slaves:
            itf, block, _, rng = slaves[name]
            out += ["      <ADDRESSBLOCKS>",
                    f'        <ADDRESSBLOCK ACCESS="read-write" INTERFACE="{itf}" NAME="{block}" '
                    f'RANGE="{rng}" USAGE="register"/>',
                    "      </ADDRESSBLOCKS>"]
        out += ["      <PORTS/>", "      <BUSINTERFACES>"]
        if name in slaves:
            out.append(f'        <BUSINTERFACE BUSNAME="gp0_ic_{name}" NAME="{slaves[name][0]}" '
                       'TYPE="SLAVE" VLNV="xilinx.com:interface:aximm:1.0"/>')
        if is_ps:
            out.append('        <BUSINTERFACE BUSNAME="ps7_M_AXI_GP0" NAME="M_AXI_GP0" '
                       'TYPE="MASTER" VLNV="xilinx.com:interface:aximm:1.0"/>')
        out.append("      </BUSINTERFACES>")
        if is_ps:
            out.append("      <MEMORYMAP>")
            for cell, (itf, block, base, rng) in slaves.items():
                out.append(f'        <MEMRANGE ADDRESSBLOCK="{block}" BASENAME="C_BASEADDR" '
                           f'BASEVALUE="0x{base:08X}" HIGHNAME="C_HIGHADDR" '
                           f'HIGHVALUE="0x{base + rng - 1:08X}" INSTANCE="{cell}" IS_DATA="TRUE" '
                           'IS_INSTRUCTION="TRUE" MASTERBUSINTERFACE="M_AXI_GP0" '
                           f'MEMTYPE="REGISTER" SLAVEBUSINTERFACE="{itf}"/>')
            out.append("      </MEMORYMAP>")
        out.append("    </MODULE>")
    out += ["  </MODULES>", "</EDKSYSTEM>", ""]
    return "\n".join(out)


def fixture(sg: bool = True) -> str:
    """The committed .hwh; ``sg=False``: the same design with a simple-mode DMA (a build
    this project does not make, for the backend's simple-mode path)."""
    text = FIXTURE.read_text()
    if sg:
        return text
    old = '<PARAMETER NAME="c_include_sg" VALUE="1"/>'
    assert text.count(old) == 1, "the fixture's DMA is not SG: regenerate it"
    return text.replace(old, '<PARAMETER NAME="c_include_sg" VALUE="0"/>')


def check_fixture(text: str, design: Design | None = None) -> None:
    """``text`` is what block_design.tcl gives now: same cells, VLNVs, CONFIG, addresses."""
    want = make_hwh(design)
    if text != want:
        import difflib
        diff = "\n".join(list(difflib.unified_diff(want.splitlines(), text.splitlines(),
                                                   "block_design.tcl", "waferq.hwh",
                                                   lineterm=""))[:40])
        raise AssertionError("the .hwh does not match block_design.tcl (regenerate: "
                             f"PYTHONPATH=.:tests python -m pynq_sim.hwh > {FIXTURE}):\n{diff}")


if __name__ == "__main__":
    sys.stdout.write(make_hwh())
