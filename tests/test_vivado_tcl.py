"""The Vivado TCL, run in plain tclsh with every Vivado command a recording stub.

An unstubbed command fails the run (the `unknown` handler records it and errors), so a
Vivado command the stubs do not know is caught here, not on a Vivado machine.
"""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import tcl_stubs
from contract import board as board_facts
from zybo_z7 import board

pytestmark = pytest.mark.skipif(shutil.which("tclsh") is None,
                                reason="tclsh is not installed (apt-get install tcl)")
ROOT = Path(__file__).resolve().parent.parent
BUILD_TCL = ROOT / "zybo_z7" / "vivado" / "build.tcl"
# each call: arguments split by SEP, calls ended by END; a list argument's elements by ELEM
SEP, END, ELEM = "\x1f", "\x1e", "\x1d"

# name -> TCL body returning the stub's result ($args is the call); every other
# command of tcl_stubs.VIVADO returns nothing. Each call is first checked
# against the command's documented syntax (UG835).
BODIES = {
    "create_bd_cell": "lindex $args end",
    "get_bd_cells": "lindex $args end", "get_bd_pins": "lindex $args end",
    "get_bd_intf_pins": "lindex $args end", "get_bd_addr_segs": "lindex $args end",
    "get_runs": "lindex $args end", "get_filesets": "lindex $args end",
    "current_project": "return waferq", "current_fileset": "return sources_1",
    "make_wrapper": "return waferq_bd_wrapper.v",
    "get_board_parts": "return $::fake_board_parts",
    "get_files": "if {[string match *.hwh [lindex $args end]]} {return $::fake_hwh}; lindex $args end",
    "get_property": "switch [lindex $args 0] {PROGRESS {return 100%} DIRECTORY {return $::fake_impl} "
                    "default {return {}}}",
}


def _prelude(calls: Path, impl: Path, hwh: Path, board_parts: str = "") -> str:
    lines = [f"set ::fake_impl {{{impl}}}", f"set ::fake_hwh {{{hwh}}}",
             f"set ::fake_board_parts {{{board_parts}}}",
             f"set ::rec [open {{{calls}}} w]",
             f"proc rec {{name argl}} {{set a [list $name]; foreach x $argl {{lappend a [join $x \\x1d]}}; puts -nonewline $::rec \"[join $a \\x1f]\\x1e\"; flush $::rec}}",
             "proc unknown {args} {rec UNKNOWN $args; error \"unstubbed vivado command: [lindex $args 0]\"}"]
    return "\n".join(lines) + "\n" + tcl_stubs.stub_procs(tcl_stubs.VIVADO, BODIES)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vivado")
    model = tmp / "export"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"topology_hash": 0xC35A1B48}))
    (tmp / "hls" / "ip").mkdir(parents=True)
    out = tmp / "bitstream"
    facts, _ = board.write(out, model)
    impl = tmp / "impl_1"
    impl.mkdir()
    (impl / "waferq_bd_wrapper.bit").write_bytes(b"bit")
    hwh = tmp / "waferq_bd.hwh"
    hwh.write_text("<hwh/>")
    proc, recorded = _replay(tmp, facts, impl, hwh)
    return proc, recorded, out


def _replay(tmp: Path, facts: Path, impl: Path, hwh: Path, board_parts: str = "", extra: str = ""):
    calls = tmp / "calls.txt"
    # A script file, not stdin: tclsh then stops at the first error with status 1.
    driver = tmp / "stub_driver.tcl"
    driver.write_text(_prelude(calls, impl, hwh, board_parts) + extra
                      + f"set argv [list {{{facts}}}]\nsource {{{BUILD_TCL}}}\n")
    proc = subprocess.run(["tclsh", str(driver)], capture_output=True, text=True, timeout=30)
    recorded = [[e for a in c.split(SEP) for e in a.split(ELEM)]
                for c in calls.read_text().split(END) if c]
    return proc, recorded


def _calls(recorded, name):
    return [c[1:] for c in recorded if c[0] == name]


def test_runs_with_known_commands_only(run):
    proc, recorded, _ = run
    assert not _calls(recorded, "UNKNOWN"), _calls(recorded, "UNKNOWN")
    assert proc.returncode == 0, proc.stderr


def test_part_and_clock(run):
    _, recorded, _ = run
    b = board_facts.load()
    (cp,) = _calls(recorded, "create_project")
    assert cp[cp.index("-part") + 1] == b.part
    ps7 = next(c for c in _calls(recorded, "set_property") if "ps7" in c[-1].split())
    cfg = dict(zip(ps7[1:-1:2], ps7[2:-1:2]))
    assert cfg["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == str(b["clocks"]["fclk0_mhz"])
    for key in ("PCW_USE_M_AXI_GP0", "PCW_USE_S_AXI_HP0", "PCW_USE_FABRIC_INTERRUPT",
                "PCW_IRQ_F2P_INTR", "PCW_UART1_PERIPHERAL_ENABLE", "PCW_ENET0_PERIPHERAL_ENABLE",
                "PCW_SD0_PERIPHERAL_ENABLE", "PCW_USB0_PERIPHERAL_ENABLE"):
        assert cfg[f"CONFIG.{key}"] == "1", key


def test_every_ip_is_created(run):
    _, recorded, _ = run
    cells = {c[-1]: c for c in _calls(recorded, "create_bd_cell")}
    vlnv = {name: c[c.index("-vlnv") + 1] for name, c in cells.items() if "-vlnv" in c}
    assert vlnv["ps7"].startswith("xilinx.com:ip:processing_system7:")
    assert vlnv["axi_dma_0"] == "xilinx.com:ip:axi_dma:7.1"
    assert vlnv["rx_fifo"].startswith("xilinx.com:ip:axis_data_fifo:")
    assert vlnv["tx_fifo"].startswith("xilinx.com:ip:axis_data_fifo:")
    assert vlnv["waferq_top_0"] == board_facts.load()["hls"]["vlnv"]
    assert vlnv["gp0_ic"].startswith("xilinx.com:ip:smartconnect:")
    assert vlnv["hp0_ic"].startswith("xilinx.com:ip:smartconnect:")
    assert vlnv["rst_fclk0"].startswith("xilinx.com:ip:proc_sys_reset:")
    assert vlnv["irq_concat"].startswith("xilinx.com:ip:xlconcat:")
    glue = cells["wq_glue_0"]
    assert glue[glue.index("-type") + 1] == "module" and glue[glue.index("-reference") + 1] == "wq_glue_top"


def _props(recorded, cell):
    c = next(c for c in _calls(recorded, "set_property") if c[0] == "-dict" and c[-1] == cell)
    return dict(zip(c[1:-1:2], c[2:-1:2]))


def test_dma_fifo_and_glue_parameters(run):
    _, recorded, _ = run
    b = board_facts.load()
    dma = _props(recorded, "axi_dma_0")
    assert dma["CONFIG.c_include_sg"] == "1"
    assert dma["CONFIG.c_sg_length_width"] == str(b["dma"]["sg_length_width"])
    assert dma["CONFIG.c_m_axis_mm2s_tdata_width"] == str(b["dma"]["data_width"])
    assert dma["CONFIG.c_include_mm2s"] == dma["CONFIG.c_include_s2mm"] == "1"
    assert _props(recorded, "rx_fifo")["CONFIG.FIFO_DEPTH"] == str(b["fifo"]["rx_depth"])
    assert _props(recorded, "tx_fifo")["CONFIG.FIFO_DEPTH"] == str(b["fifo"]["tx_depth"])
    glue = _props(recorded, "wq_glue_0")
    assert glue["CONFIG.MAX_WORDS"] == str(b["guard"]["max_words"])
    assert glue["CONFIG.TOPOLOGY_HASH"] == "0xC35A1B48"


def _intf_edges(recorded):
    edges = set()
    for c in _calls(recorded, "connect_bd_intf_net"):
        pins = [p for p in c if p != "get_bd_intf_pins"]
        edges.add((pins[0], pins[1]))
    return edges


def test_streams_and_buses_are_connected(run):
    _, recorded, _ = run
    edges = _intf_edges(recorded)
    for e in [("axi_dma_0/M_AXIS_MM2S", "rx_fifo/S_AXIS"), ("rx_fifo/M_AXIS", "waferq_top_0/rx"),
              ("waferq_top_0/tx", "wq_glue_0/s_axis"), ("wq_glue_0/m_axis", "tx_fifo/S_AXIS"),
              ("tx_fifo/M_AXIS", "axi_dma_0/S_AXIS_S2MM"),
              ("ps7/M_AXI_GP0", "gp0_ic/S00_AXI"), ("hp0_ic/M00_AXI", "ps7/S_AXI_HP0")]:
        assert e in edges, e
    gp0_slaves = {b for a, b in edges if a.startswith("gp0_ic/M")}
    assert gp0_slaves == {"axi_dma_0/S_AXI_LITE", "wq_glue_0/s_axil", "waferq_top_0/s_axi_control"}
    hp0_masters = {a for a, b in edges if b.startswith("hp0_ic/S")}
    assert hp0_masters == {"axi_dma_0/M_AXI_SG", "axi_dma_0/M_AXI_MM2S", "axi_dma_0/M_AXI_S2MM"}


def test_clock_reset_and_interrupts(run):
    _, recorded, _ = run
    nets = [[p for p in c if p != "get_bd_pins"] for c in _calls(recorded, "connect_bd_net")]
    clk = next(n for n in nets if n[0] == "ps7/FCLK_CLK0")
    for pin in ("waferq_top_0/ap_clk", "wq_glue_0/aclk", "axi_dma_0/m_axi_sg_aclk",
                "rx_fifo/s_axis_aclk", "tx_fifo/s_axis_aclk", "ps7/S_AXI_HP0_ACLK"):
        assert pin in clk, pin
    # the CSR soft reset restarts the core and empties both stream FIFOs
    assert ["wq_glue_0/core_rst_n", "waferq_top_0/ap_rst_n", "rx_fifo/s_axis_aresetn",
            "tx_fifo/s_axis_aresetn"] in nets
    periph = next(n for n in nets if n[0] == "rst_fclk0/peripheral_aresetn")
    assert "rx_fifo/s_axis_aresetn" not in periph and "tx_fifo/s_axis_aresetn" not in periph
    pins = {"dma_mm2s": "axi_dma_0/mm2s_introut", "dma_s2mm": "axi_dma_0/s2mm_introut",
            "hls_core": "waferq_top_0/interrupt"}
    for i, src in enumerate(board_facts.load()["irq"]["order"]):
        assert [pins[src], f"irq_concat/In{i}"] in nets, src
    assert ["irq_concat/dout", "ps7/IRQ_F2P"] in nets


def test_address_map_from_board_facts(run):
    _, recorded, _ = run
    segs = {"dma": "axi_dma_0/S_AXI_LITE/Reg", "csr": "wq_glue_0/s_axil/reg0",
            "hls_ctrl": "waferq_top_0/s_axi_control/Reg"}
    got = {}
    for c in _calls(recorded, "assign_bd_address"):
        if "-offset" in c:
            got[c[-1]] = (int(c[c.index("-offset") + 1], 16), int(c[c.index("-range") + 1], 16),
                          c[c.index("-target_address_space") + 1])
    for name, s in board_facts.load().slaves.items():
        assert got[segs[name]] == (s.base, s.range, "/ps7/Data"), name
    spaces = {c[c.index("-target_address_space") + 1] for c in _calls(recorded, "assign_bd_address")}
    assert {"/axi_dma_0/Data_SG", "/axi_dma_0/Data_MM2S", "/axi_dma_0/Data_S2MM"} <= spaces


def test_bitstream_xsa_and_hwh_are_written(run):
    _, recorded, out = run
    assert ["impl_1", "-to_step", "write_bitstream"] == _calls(recorded, "launch_runs")[1][:3]
    (hw,) = _calls(recorded, "write_hw_platform")
    assert "-fixed" in hw and "-include_bit" in hw and hw[-1] == str(out / "waferq.xsa")
    assert (out / "waferq.bit").read_bytes() == b"bit"
    assert (out / "waferq.hwh").is_file()
    assert _calls(recorded, "validate_bd_design") and _calls(recorded, "make_wrapper")


# --- the stubs themselves: strict both ways ------------------------------------------------

def _one_call(tmp_path, line: str):
    """Run one TCL line against the strict stubs; (status, stderr)."""
    calls = tmp_path / "calls.txt"
    driver = tmp_path / "one.tcl"
    driver.write_text(_prelude(calls, tmp_path, tmp_path) + line + "\n")
    proc = subprocess.run(["tclsh", str(driver)], capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("line, why", [
    ("get_bd_pins a/x b/y", "get_bd_pins: 2 positional arguments"),   # UG835: one <patterns>
    ("get_bd_intf_pins a/x b/y", "get_bd_intf_pins: 2 positional arguments"),
    ("get_bd_cells -no_such a", "undocumented option -no_such"),
    ("create_bd_cell -vlnv x:y:z:1.0 c0", "missing required option -type"),
    ("connect_bd_intf_net [get_bd_intf_pins a/x]", "connect_bd_intf_net: 1 positional"),
    ("set_property CONFIG.X 1", "set_property takes <name> <value> <objects>"),
    ("set_property -dict [list CONFIG.X 1] a b", "set_property -dict takes one positional"),
    ("create_project -part", "option -part needs a value"),
    ("launch_runs -jobs 2", "launch_runs: 0 positional arguments"),
    ("no_such_command 1", "unstubbed vivado command: no_such_command"),
])
def test_stub_refuses_what_the_manual_rules_out(tmp_path, line, why):
    rc, err = _one_call(tmp_path, line)
    assert rc != 0 and why in err, err


@pytest.mark.parametrize("line", [
    "get_bd_pins [list a/x b/y]",
    "get_bd_pins -of_objects [get_bd_cells ps7]",
    "set_property -dict [list CONFIG.A -0.050 CONFIG.B {MIO 1 .. 2}] [get_bd_cells ps7]",
    "set_property top w [current_fileset]",
    "connect_bd_net -net n0 [get_bd_pins a/x] [get_bd_pins [list b/y c/z]]",
    "create_bd_cell -type ip -vlnv x:y:z:1.0 -quiet c0",
])
def test_stub_accepts_documented_calls(tmp_path, line):
    rc, err = _one_call(tmp_path, line)
    assert rc == 0, err


def test_ps7_gets_every_value_of_board_toml(run):
    """The generated TCL sets each processing_system7 CONFIG value of board.toml
    (the 385 preset values, our additions, the PL-facing ones), and nothing else."""
    _, recorded, _ = run
    cfg = _props(recorded, "ps7")
    want = {f"CONFIG.{k}": v for k, v in board_facts.load().ps7_config().items()}
    assert cfg == want
    assert len(want) >= 385 and cfg["CONFIG.PCW_UIPARAM_DDR_FREQ_MHZ"] == "533.333333"


def test_board_part_only_when_the_board_files_are_installed(run, tmp_path):
    proc, recorded, out = run
    part = board_facts.load()["board"]["board_part"]
    assert _calls(recorded, "get_board_parts") == [["-quiet", part]]
    assert not [c for c in _calls(recorded, "set_property") if c[0] == "board_part"]
    assert "board files for" in proc.stdout
    impl = tmp_path / "impl_1"
    impl.mkdir()
    (impl / "waferq_bd_wrapper.bit").write_bytes(b"bit")
    (tmp_path / "waferq_bd.hwh").write_text("<hwh/>")
    proc, recorded = _replay(tmp_path, out / "board_facts.tcl", impl, tmp_path / "waferq_bd.hwh",
                             board_parts=part)
    assert proc.returncode == 0, proc.stderr
    assert [c for c in _calls(recorded, "set_property") if c[0] == "board_part"] == [
        ["board_part", part, "waferq"]]
