"""Strict replay stubs of the Vivado and vitis_hls TCL commands our scripts use.

Nothing here has Vivado or Vitis HLS, so the scripts run in plain tclsh with
each tool command replaced by a stub that records the call and then checks it
against the command's documented syntax: the options it takes (flags, options
with a value, required options) and how many positional arguments it takes.
An undocumented option, a missing value or required option, or a wrong number
of positional arguments stops the script with an error, as the tool would.

The signatures are copied from the vendor manuals, by hand, for the commands
used and no others (a command without a stub fails through ``unknown``):
Vivado Design Suite Tcl Command Reference Guide, UG835 (2022.1-2024.2), and
Vitis High-Level Synthesis User Guide, UG1399 (2023.2-2025.2), "Tcl Commands".
They are a stand-in for the tools' own parsers: they catch what the manuals
rule out, not what a tool may additionally reject (option values, object
types, whether a pin exists).
"""
from __future__ import annotations

from dataclasses import dataclass, field

INF = -1  # no upper bound on positional arguments


@dataclass(frozen=True)
class Sig:
    """One command's documented syntax."""
    flags: tuple = ()       # options without a value
    options: tuple = ()     # options that take one value
    required: tuple = ()    # options that must be given
    min_pos: int = 0
    max_pos: int = 0        # INF: any number
    # extra TCL run with $pos (positional args) and $seen (options given)
    check: str = ""
    tool: str = "vivado"
    extra_flags: tuple = field(default=("-quiet", "-verbose"))  # every UG835 command has them


_GET = dict(flags=("-regexp", "-hierarchical"), options=("-filter", "-of_objects"), max_pos=1)

# UG835. "<objects>..." is 1..INF, "[<patterns>]" 0..1.
VIVADO = {
    "create_project": Sig(flags=("-force", "-in_memory", "-ip", "-rtl_kernel"), options=("-part",),
                          max_pos=2),
    "set_property": Sig(options=("-dict",), min_pos=1, max_pos=3, check=(
        'if {[lsearch -exact $seen -dict] >= 0} {if {[llength $pos] != 1} '
        '{error "set_property -dict takes one positional argument (the objects), got [llength $pos]"}} '
        'elseif {[llength $pos] != 3} '
        '{error "set_property takes <name> <value> <objects>, got [llength $pos] arguments"}')),
    "current_project": Sig(max_pos=1),
    "update_ip_catalog": Sig(flags=("-rebuild", "-scan_changes", "-create_index", "-update_module_ref"),
                             options=("-add_ip", "-delete_ip", "-disable_ip", "-enable_ip",
                                      "-add_interface", "-repo_path")),
    "add_files": Sig(flags=("-norecurse", "-scan_for_includes", "-force"),
                     options=("-fileset", "-of_objects", "-copy_to"), max_pos=INF),
    "get_files": Sig(flags=("-references", "-all", "-regexp", "-nocase"),
                     options=("-of_objects", "-compile_order", "-used_in", "-filter"), max_pos=1),
    "get_filesets": Sig(flags=("-regexp", "-nocase"), options=("-filter", "-of_objects"), max_pos=1),
    "get_runs": Sig(flags=("-regexp", "-nocase"), options=("-filter", "-of_objects"), max_pos=1),
    "get_board_parts": Sig(flags=("-regexp", "-nocase", "-latest_file_version", "-latest_hw_revision"),
                           options=("-filter", "-of_objects"), max_pos=1),
    "current_fileset": Sig(flags=("-constrset", "-simset"), max_pos=1),
    "update_compile_order": Sig(flags=("-force_gui",), options=("-fileset",)),
    "create_bd_design": Sig(options=("-dir", "-cell", "-bdsource", "-boundary_from_container"),
                            min_pos=1, max_pos=1),
    "create_bd_cell": Sig(options=("-vlnv", "-type", "-reference"), required=("-type",),
                          min_pos=1, max_pos=1),
    "get_bd_cells": Sig(**_GET),
    "get_bd_pins": Sig(**_GET),
    "get_bd_intf_pins": Sig(**_GET),
    "get_bd_addr_segs": Sig(flags=("-regexp", "-hierarchical", "-excluded", "-addressables"),
                            options=("-filter", "-of_objects"), max_pos=1),
    "connect_bd_intf_net": Sig(options=("-intf_net", "-boundary_type"), min_pos=2, max_pos=3),
    "connect_bd_net": Sig(options=("-net", "-boundary_type"), min_pos=1, max_pos=INF),
    "make_bd_intf_pins_external": Sig(options=("-name",), min_pos=1, max_pos=INF),
    "assign_bd_address": Sig(flags=("-external", "-force", "-boundary", "-combine_segments"),
                             options=("-target_address_space", "-export_to_file", "-export_gui_to_file",
                                      "-import_from_file", "-offset", "-range", "-dict"),
                             max_pos=INF),
    "validate_bd_design": Sig(flags=("-force",), options=("-design",)),
    "save_bd_design": Sig(max_pos=1),
    "generate_target": Sig(flags=("-force",), min_pos=2, max_pos=2),
    "make_wrapper": Sig(flags=("-top", "-testbench", "-inst_template", "-import", "-force"),
                        options=("-fileset", "-files"), required=("-files",)),
    "launch_runs": Sig(flags=("-scripts_only", "-email_all", "-next_step", "-force"),
                       options=("-jobs", "-lsf", "-host", "-remote_cmd", "-email_to", "-pre_launch_script",
                                "-post_launch_script", "-custom_script", "-dir", "-to_step"),
                       min_pos=1, max_pos=INF),
    "wait_on_run": Sig(options=("-timeout",), min_pos=1, max_pos=1),
    "get_property": Sig(flags=("-min", "-max"), min_pos=2, max_pos=2),
    "write_hw_platform": Sig(flags=("-fixed", "-force", "-include_bit", "-include_sim_content",
                                    "-minimal", "-hw", "-hw_emu"), options=("-file",), max_pos=1),
}

# UG1399 (vitis_hls has no -quiet/-verbose on these).
_HLS = dict(tool="vitis_hls", extra_flags=())
VITIS_HLS = {
    "open_project": Sig(flags=("-reset", "-upgrade"), min_pos=1, max_pos=1, **_HLS),
    "set_top": Sig(min_pos=1, max_pos=1, **_HLS),
    "add_files": Sig(flags=("-tb",), options=("-blackbox", "-cflags", "-csimflags"),
                     min_pos=1, max_pos=1, **_HLS),
    "open_solution": Sig(flags=("-reset",), options=("-flow_target",), min_pos=1, max_pos=1, **_HLS),
    "set_part": Sig(min_pos=1, max_pos=1, **_HLS),
    "create_clock": Sig(options=("-period", "-name"), required=("-period",), **_HLS),
    "csim_design": Sig(flags=("-clean", "-O", "-profile", "-setup"),
                       options=("-argv", "-ldflags", "-mflags"), **_HLS),
    "csynth_design": Sig(flags=("-dump_cfg", "-dump_post_cfg", "-synthesis_check"), **_HLS),
    "cosim_design": Sig(flags=("-O", "-coverage", "-disable_binary_tv", "-disable_deadlock_detection",
                               "-enable_dataflow_profiling", "-enable_fifo_sizing", "-random_stall",
                               "-setup", "-stable_axilite_update", "-wave_debug"),
                        options=("-argv", "-ldflags", "-mflags", "-rtl", "-tool", "-trace_level",
                                 "-user_stall"), **_HLS),
    "export_design": Sig(options=("-description", "-display_name", "-flow", "-format", "-ipname",
                                  "-library", "-output", "-rtl", "-taxonomy", "-vendor", "-version"),
                         **_HLS),
    "exit": Sig(**_HLS),
}

CHECK_PROC = r"""
proc wq_check_call {name flags options required minp maxp extra argl} {
    set pos {}
    set seen {}
    set n [llength $argl]
    for {set i 0} {$i < $n} {incr i} {
        set a [lindex $argl $i]
        if {[string match -* $a] && ![string is double -strict $a]} {
            if {[lsearch -exact $flags $a] >= 0} {
                lappend seen $a
            } elseif {[lsearch -exact $options $a] >= 0} {
                if {$i + 1 >= $n} {error "$name: option $a needs a value"}
                incr i
                lappend seen $a
            } else {
                error "$name: undocumented option $a"
            }
        } else {
            lappend pos $a
        }
    }
    foreach r $required {
        if {[lsearch -exact $seen $r] < 0} {error "$name: missing required option $r"}
    }
    set k [llength $pos]
    if {$k < $minp || ($maxp >= 0 && $k > $maxp)} {
        set most [expr {$maxp < 0 ? "any" : $maxp}]
        error "$name: $k positional arguments ([join $pos {, }]), documented $minp to $most"
    }
    eval $extra
}
"""


def _list(items) -> str:
    return "{" + " ".join(items) + "}"


def stub_procs(table: dict[str, Sig], bodies: dict[str, str], rec: str = "rec") -> str:
    """TCL defining one proc per command: record the call (``rec NAME $args``),
    check it against its Sig, then run its body from ``bodies`` (default: return
    nothing). Also defines ``wq_check_call``."""
    unknown = set(bodies) - set(table)
    if unknown:
        raise KeyError(f"bodies for commands without a documented signature: {sorted(unknown)}")
    out = [CHECK_PROC]
    for name, s in table.items():
        flags = _list((*s.flags, *s.extra_flags))
        check = ("wq_check_call " + " ".join([name, flags, _list(s.options), _list(s.required),
                                                str(s.min_pos), str(s.max_pos), "{" + s.check + "}",
                                                "$args"]))
        body = bodies.get(name, "") or "return {}"
        out.append(f"proc {name} {{args}} {{\n    {rec} {name} $args\n    {check}\n    {body}\n}}")
    return "\n".join(out) + "\n"
