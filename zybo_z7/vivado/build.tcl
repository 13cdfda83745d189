# Vivado batch build of the waferq bitstream for the Zybo Z7-20.
#
#   vivado -mode batch -source zybo_z7/vivado/build.tcl -tclargs build/<model>/bitstream/board_facts.tcl
#
# zybo_z7/bitstream.py runs this (make bitstream). Writes into wq_out_dir:
#   waferq.bit, waferq.hwh (PYNQ loads the pair by basename), waferq.xsa (PetaLinux/Vitis).

if {[llength $argv] != 1} {
    error "usage: vivado -mode batch -source build.tcl -tclargs <board_facts.tcl>"
}
source [lindex $argv 0]
set wq_tcl_dir [file dirname [file normalize [info script]]]
if {![info exists wq_jobs]} { set wq_jobs 2 }

source [file join $wq_tcl_dir create_project.tcl]
source [file join $wq_tcl_dir block_design.tcl]

set wq_bd_file [get_files $wq_bd.bd]
generate_target all $wq_bd_file
set wq_wrapper [make_wrapper -files $wq_bd_file -top]
add_files -norecurse $wq_wrapper
set_property top ${wq_bd}_wrapper [current_fileset]
update_compile_order -fileset sources_1

# Project flow: synth_1 then impl_1 (opt, place, route) through write_bitstream.
launch_runs synth_1 -jobs $wq_jobs
wait_on_run synth_1
if {[get_property PROGRESS [get_runs synth_1]] ne "100%"} {
    error "synthesis failed: see [get_property DIRECTORY [get_runs synth_1]]/runme.log"
}
launch_runs impl_1 -to_step write_bitstream -jobs $wq_jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    error "implementation failed: see [get_property DIRECTORY [get_runs impl_1]]/runme.log"
}

set wq_impl_dir [get_property DIRECTORY [get_runs impl_1]]
file copy -force [file join $wq_impl_dir ${wq_bd}_wrapper.bit] [file join $wq_out_dir waferq.bit]
write_hw_platform -fixed -include_bit -force [file join $wq_out_dir waferq.xsa]
# PYNQ finds the hardware handoff next to the bitstream, by the same basename.
set wq_hwh [lindex [get_files -all -of_objects $wq_bd_file $wq_bd.hwh] 0]
file copy -force $wq_hwh [file join $wq_out_dir waferq.hwh]
puts "waferq: wrote [file join $wq_out_dir waferq.bit], waferq.hwh and waferq.xsa"
