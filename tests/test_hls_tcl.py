"""run_hls.tcl in plain tclsh, every Vitis HLS command a recording stub.

An unstubbed command fails the run (the `unknown` handler records it and errors),
so a command the stubs do not know is caught here, not on a Vitis machine. The
test bench it adds is compiled with g++ and replayed against RefCore's replies.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hls import tcl
from hls.generate import generate
from contract.intmodel import random_model
from contract.spec import CNNSpec
from contract import board

import tcl_stubs

ROOT = Path(__file__).resolve().parent.parent
SEP, END = "\x1f", "\x1e"
needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None,
                                 reason="tclsh is not installed (apt-get install tcl)")

# name -> extra TCL run after recording and checking ($args is the call); every
# call is checked against the command's documented syntax (UG1399) first.
SYN_VERILOG = f"$::here/{tcl.PROJECT}/{tcl.SOLUTION}/syn/verilog/{tcl.TOP}.v"
BODIES = {
    # csynth_design writes the Verilog top (here: a fixture shaped like it).
    "csynth_design": f"file mkdir [file dirname {SYN_VERILOG}]; file copy -force $::syn_fixture {SYN_VERILOG}",
    # export_design leaves the unzipped IP in <solution>/impl/ip, as Vitis HLS does.
    "export_design": f"file mkdir $::here/{tcl.PROJECT}/{tcl.SOLUTION}/impl/ip",
}
SYN_FIXTURES = ROOT / "tests" / "data" / "hls_syn"


def _prelude(calls: Path, here: Path, syn: Path = SYN_FIXTURES / "good_waferq_top.v") -> str:
    lines = [f"set ::here {{{here}}}", f"set ::rec [open {{{calls}}} w]", f"set ::syn_fixture {{{syn}}}",
             'proc rec {name argl} {puts -nonewline $::rec "[join [concat [list $name] $argl] \\x1f]\\x1e"; '
             "flush $::rec}",
             'proc unknown {args} {rec UNKNOWN $args; error "unstubbed vitis_hls command: [lindex $args 0]"}']
    return "\n".join(lines) + "\n" + tcl_stubs.stub_procs(tcl_stubs.VITIS_HLS, BODIES)


def _run_tcl(script: Path, extra: str = "", syn: Path = SYN_FIXTURES / "good_waferq_top.v",
             env: dict | None = None):
    calls = script.parent / "calls.txt"
    # A script file, not stdin: tclsh then stops at the first error with status 1.
    driver = script.parent / "stub_driver.tcl"
    driver.write_text(_prelude(calls, script.parent, syn) + f"source {{{script}}}\n" + extra)
    env = {k: v for k, v in os.environ.items() if k != "WQ_COSIM"} | (env or {})
    proc = subprocess.run(["tclsh", str(driver)], capture_output=True, text=True, timeout=30, env=env)
    recorded = [c.split(SEP) for c in calls.read_text().split(END) if c]
    return proc, recorded


def _calls(recorded, name):
    return [c[1:] for c in recorded if c[0] == name]


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hls_tcl")
    random_model(CNNSpec.uniform(4, 4), seed=3).save(tmp / "export")
    generate(tmp / "export", tmp / "hls")
    tcl.write(tmp / "export", tmp / "hls", n_infer=3)
    return tmp / "hls"


@pytest.fixture(scope="module")
def run(hls_dir):
    return _run_tcl(hls_dir / "run_hls.tcl")


@needs_tclsh
def test_runs_with_known_commands_only(run):
    proc, recorded = run
    assert proc.returncode == 0, proc.stderr
    assert not _calls(recorded, "UNKNOWN")


@needs_tclsh
def test_unknown_command_fails(hls_dir):
    # The guard itself: a command no stub defines must stop the script.
    proc, recorded = _run_tcl(hls_dir / "run_hls.tcl", "config_no_such_thing -x 1\n")
    assert proc.returncode != 0
    assert "unstubbed vitis_hls command: config_no_such_thing" in proc.stderr
    assert _calls(recorded, "UNKNOWN") == [["config_no_such_thing", "-x", "1"]]


@needs_tclsh
def test_part_clock_and_top_come_from_the_board_facts(run):
    _, recorded = run
    facts = board.load()
    assert _calls(recorded, "set_part") == [[facts.part]] == [["xc7z020clg400-1"]]
    period = _calls(recorded, "create_clock")
    assert len(period) == 1 and float(period[0][period[0].index("-period") + 1]) == 10.0
    assert 1e9 / facts.fclk0_hz == 10.0
    assert _calls(recorded, "set_top") == [["waferq_top"]]


@needs_tclsh
def test_flow_order(run):
    _, recorded = run
    names = [c[0] for c in recorded if c[0] != "add_files"]
    # tclsh itself calls `exit` once more when the driver script ends.
    names = names[:names.index("exit") + 1]
    assert names == ["open_project", "set_top", "open_solution", "set_part", "create_clock",
                     "csim_design", "csynth_design", "export_design", "exit"]


@needs_tclsh
def test_cosim_only_when_asked(hls_dir):
    proc, recorded = _run_tcl(hls_dir / "run_hls.tcl", env={"WQ_COSIM": "1"})
    assert proc.returncode == 0, proc.stderr
    names = [c[0] for c in recorded if c[0] not in ("add_files",)]
    assert names.index("csynth_design") < names.index("cosim_design") < names.index("export_design")


@needs_tclsh
def test_interface_check_passes_the_side_channel_top(run):
    proc, _ = run
    assert "interface check passed" in proc.stdout


@needs_tclsh
@pytest.mark.parametrize("edit, why", [
    (None, "rx has 40-bit TDATA"),                     # a struct stream: packed, no side channels
    (lambda t: t.replace("input  [0:0] rx_TLAST;\n", ""), "rx has no TLAST"),
    (lambda t: t.replace("output  [3:0] tx_TKEEP;\n", ""), "tx has no TKEEP"),
    (lambda t: t.replace("output  [31:0] tx_TDATA;", "output  [63:0] tx_TDATA;"), "tx has 64-bit TDATA"),
    (lambda t: t.replace("s_axi_control_", "s_axi_ctrl_"), "no AXI4-Lite bundle s_axi_control"),
])
def test_interface_check_stops_a_wrong_top(hls_dir, tmp_path, edit, why):
    if edit is None:
        syn = SYN_FIXTURES / "struct_waferq_top.v"
    else:
        syn = tmp_path / "waferq_top.v"
        text = (SYN_FIXTURES / "good_waferq_top.v").read_text()
        assert edit(text) != text
        syn.write_text(edit(text))
    proc, recorded = _run_tcl(hls_dir / "run_hls.tcl", syn=syn)
    assert proc.returncode != 0
    assert f"interface check: {why}" in proc.stderr, proc.stderr
    assert not _calls(recorded, "export_design")  # stopped before the IP is exported


@needs_tclsh
def test_every_design_file_is_added_and_exists(run, hls_dir):
    _, recorded = run
    added = _calls(recorded, "add_files")
    design = {Path(a[0]) for a in added if a[0] != "-tb"}
    fw = hls_dir / "firmware"
    expected = {p for p in fw.iterdir() if p.suffix in (".cpp", ".h") and p.name not in tcl.NOT_DESIGN}
    assert design == expected
    assert all(p.is_file() for p in design)
    for a in added:
        if a[0].endswith(".cpp"):
            assert a[1] == "-cflags" and f"-I{fw}" in a[2].split()


@needs_tclsh
def test_testbench_files_are_added_with_tb(run, hls_dir):
    _, recorded = run
    tb = {Path(a[1]) for a in _calls(recorded, "add_files") if a[0] == "-tb"}
    names = {p.name for p in tb}
    assert names == {tcl.TB_NAME, tcl.STIMULUS, tcl.EXPECTED}
    assert all(p.is_file() for p in tb)
    assert "csim_api.cpp" not in {Path(a[-1]).name for a in _calls(recorded, "add_files")}


@needs_tclsh
def test_export_vlnv_matches_the_block_design(run, hls_dir):
    _, recorded = run
    (call,) = _calls(recorded, "export_design")
    opts = dict(zip(call[::2], call[1::2]))
    assert opts["-format"] == "ip_catalog"
    vlnv = ":".join(opts[k] for k in ("-vendor", "-library", "-ipname", "-version"))
    assert vlnv == board.load()["hls"]["vlnv"] == "xilinx.com:hls:waferq_top:1.0"
    # The IP lands where zybo_z7/board.py points the Vivado ip_repo_paths.
    assert (hls_dir / "ip").is_dir()


@pytest.mark.needs_gxx
def test_testbench_passes_against_refcore_and_fails_on_a_difference(hls_dir, tmp_path):
    from hls.csim_build import ap_types_dir

    fw, tb = hls_dir / "firmware", hls_dir / "tb"
    exe = tmp_path / "tb"
    cmd = ["g++", "-O1", "-std=c++14", "-w", f"-I{fw}", f"-I{ap_types_dir()}",
           str(tb / tcl.TB_NAME), str(fw / "waferq_top.cpp"), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    ok = subprocess.run([str(exe)], cwd=tb, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout
    assert "10 of 10 replies match" in ok.stdout  # 8, then a U8 and a DIE2 batch
    # One flipped logit bit in the expectation must fail the bench.
    lines = (tb / tcl.EXPECTED).read_text().splitlines()
    words = lines[-1].split()
    words[6] = f"{int(words[6], 16) ^ 1:08x}"
    shutil.copy(tb / tcl.STIMULUS, tmp_path / tcl.STIMULUS)
    (tmp_path / tcl.EXPECTED).write_text("\n".join(lines[:-1] + [" ".join(words)]) + "\n")
    bad = subprocess.run([str(exe), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "reply 9 differs" in bad.stdout


def test_synth_without_vitis_hls_exits_2_with_one_sentence(hls_dir, tmp_path):
    # A PATH holding only the python interpreter's folder: no vitis_hls there.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = dict(os.environ, PATH=str(bindir))
    model = hls_dir.parent / "export"
    proc = subprocess.run([sys.executable, "-m", "hls.synth", "--model", str(model),
                           "--hls", str(tmp_path / "hls")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    msg = proc.stderr.strip()
    assert "\n" not in msg and msg.endswith(".") and "neither vitis_hls nor vitis-run is on PATH" in msg
    assert (tmp_path / "hls" / "run_hls.tcl").is_file()


@needs_tclsh
@pytest.mark.parametrize("line, why", [
    ("create_clock -name default", "missing required option -period"),
    ("export_design -format ip_catalog -no_such 1", "undocumented option -no_such"),
    ("open_solution -reset", "open_solution: 0 positional arguments"),
    ("set_top a b", "set_top: 2 positional arguments"),
    ("csynth_design -quiet", "undocumented option -quiet"),   # no -quiet in vitis_hls
])
def test_stub_refuses_what_the_manual_rules_out(hls_dir, line, why):
    proc, _ = _run_tcl(hls_dir / "run_hls.tcl", line + "\n")
    assert proc.returncode != 0 and why in proc.stderr, proc.stderr
