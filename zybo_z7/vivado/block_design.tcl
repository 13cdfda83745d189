# Block design of the waferq accelerator (sourced by build.tcl; wq_* from board_facts.tcl).
#
#   DDR <- HP0 <- hp0_ic <- axi_dma_0 (SG, MM2S/S2MM)
#   axi_dma_0 M_AXIS_MM2S -> rx_fifo -> waferq_top_0 rx
#   waferq_top_0 tx -> wq_glue_0 (frame guard) -> tx_fifo -> axi_dma_0 S_AXIS_S2MM
#   GP0 -> gp0_ic -> axi_dma_0 S_AXI_LITE, wq_glue_0 s_axil (CSR), waferq_top_0 s_axi_control
#   interrupts -> irq_concat (order: wq_irq_order) -> ps7 IRQ_F2P
# Cell names are what PYNQ and the device tree see (ol.axi_dma_0, ...): keep them stable.

set wq_bd waferq_bd
create_bd_design $wq_bd

proc wq_ip {vlnv name {config {}}} {
    set cell [create_bd_cell -type ip -vlnv $vlnv $name]
    if {[llength $config]} { set_property -dict $config $cell }
    return $cell
}

# --- cells -------------------------------------------------------------------------------
wq_ip xilinx.com:ip:processing_system7:5.5 ps7 $wq_ps7_config

wq_ip xilinx.com:ip:axi_dma:7.1 axi_dma_0 [list \
    CONFIG.c_include_sg $wq_dma_include_sg \
    CONFIG.c_sg_include_stscntrl_strm 0 \
    CONFIG.c_sg_length_width $wq_dma_sg_length_width \
    CONFIG.c_addr_width $wq_dma_addr_width \
    CONFIG.c_include_mm2s 1 \
    CONFIG.c_include_s2mm 1 \
    CONFIG.c_m_axi_mm2s_data_width $wq_dma_data_width \
    CONFIG.c_m_axis_mm2s_tdata_width $wq_dma_data_width \
    CONFIG.c_m_axi_s2mm_data_width $wq_dma_data_width \
    CONFIG.c_s_axis_s2mm_tdata_width $wq_dma_data_width \
    CONFIG.c_mm2s_burst_size $wq_dma_burst_size \
    CONFIG.c_s2mm_burst_size $wq_dma_burst_size]

set wq_tdata_bytes [expr {$wq_dma_data_width / 8}]
wq_ip xilinx.com:ip:axis_data_fifo:2.0 rx_fifo [list \
    CONFIG.FIFO_DEPTH $wq_rx_fifo_depth CONFIG.TDATA_NUM_BYTES $wq_tdata_bytes CONFIG.HAS_TLAST 1]
wq_ip xilinx.com:ip:axis_data_fifo:2.0 tx_fifo [list \
    CONFIG.FIFO_DEPTH $wq_tx_fifo_depth CONFIG.TDATA_NUM_BYTES $wq_tdata_bytes CONFIG.HAS_TLAST 1]

wq_ip $wq_hls_vlnv waferq_top_0

set wq_glue [create_bd_cell -type module -reference wq_glue_top wq_glue_0]
set_property -dict [list \
    CONFIG.MAX_WORDS $wq_max_words \
    CONFIG.SOFT_RESET_CYCLES $wq_soft_reset_cycles \
    CONFIG.TOPOLOGY_HASH $wq_topology_hash] $wq_glue

# SmartConnect bridges the AXI4-Lite slaves to the AXI3 GP0 master and the DMA's three
# masters to the AXI3 HP0 slave, width conversion included.
wq_ip xilinx.com:ip:smartconnect:1.0 gp0_ic [list CONFIG.NUM_SI 1 CONFIG.NUM_MI 3]
wq_ip xilinx.com:ip:smartconnect:1.0 hp0_ic [list CONFIG.NUM_SI 3 CONFIG.NUM_MI 1]
wq_ip xilinx.com:ip:proc_sys_reset:5.0 rst_fclk0
wq_ip xilinx.com:ip:xlconcat:2.1 irq_concat [list CONFIG.NUM_PORTS [llength $wq_irq_order]]

# --- streams: DMA -> RX FIFO -> core -> frame guard -> TX FIFO -> DMA -------------------
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXIS_MM2S] [get_bd_intf_pins rx_fifo/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins rx_fifo/M_AXIS] [get_bd_intf_pins waferq_top_0/rx]
connect_bd_intf_net [get_bd_intf_pins waferq_top_0/tx] [get_bd_intf_pins wq_glue_0/s_axis]
connect_bd_intf_net [get_bd_intf_pins wq_glue_0/m_axis] [get_bd_intf_pins tx_fifo/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins tx_fifo/M_AXIS] [get_bd_intf_pins axi_dma_0/S_AXIS_S2MM]

# --- memory-mapped: GP0 control, HP0 data -------------------------------------------------
connect_bd_intf_net [get_bd_intf_pins ps7/M_AXI_GP0] [get_bd_intf_pins gp0_ic/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins gp0_ic/M00_AXI] [get_bd_intf_pins axi_dma_0/S_AXI_LITE]
connect_bd_intf_net [get_bd_intf_pins gp0_ic/M01_AXI] [get_bd_intf_pins wq_glue_0/s_axil]
connect_bd_intf_net [get_bd_intf_pins gp0_ic/M02_AXI] [get_bd_intf_pins waferq_top_0/s_axi_control]
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_SG] [get_bd_intf_pins hp0_ic/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_MM2S] [get_bd_intf_pins hp0_ic/S01_AXI]
connect_bd_intf_net [get_bd_intf_pins axi_dma_0/M_AXI_S2MM] [get_bd_intf_pins hp0_ic/S02_AXI]
connect_bd_intf_net [get_bd_intf_pins hp0_ic/M00_AXI] [get_bd_intf_pins ps7/S_AXI_HP0]

# --- DDR and fixed IO leave the block design as the PS7's own pins --------------------------
make_bd_intf_pins_external [get_bd_intf_pins ps7/DDR]
make_bd_intf_pins_external [get_bd_intf_pins ps7/FIXED_IO]

# --- one clock (FCLK_CLK0) and its reset -----------------------------------------------------
# get_bd_pins takes one pattern argument (UG835): several pins go in as one list.
connect_bd_net [get_bd_pins ps7/FCLK_CLK0] [get_bd_pins [list \
    ps7/M_AXI_GP0_ACLK ps7/S_AXI_HP0_ACLK \
    axi_dma_0/s_axi_lite_aclk axi_dma_0/m_axi_sg_aclk axi_dma_0/m_axi_mm2s_aclk axi_dma_0/m_axi_s2mm_aclk \
    rx_fifo/s_axis_aclk tx_fifo/s_axis_aclk waferq_top_0/ap_clk wq_glue_0/aclk \
    gp0_ic/aclk hp0_ic/aclk rst_fclk0/slowest_sync_clk]]
connect_bd_net [get_bd_pins ps7/FCLK_RESET0_N] [get_bd_pins rst_fclk0/ext_reset_in]
connect_bd_net [get_bd_pins rst_fclk0/interconnect_aresetn] [get_bd_pins [list gp0_ic/aresetn hp0_ic/aresetn]]
connect_bd_net [get_bd_pins rst_fclk0/peripheral_aresetn] [get_bd_pins [list \
    axi_dma_0/axi_resetn wq_glue_0/aresetn]]
# The CSR soft reset (wq_glue_top core_rst_n: low during the system reset too) restarts the
# core and empties both FIFOs, so no word of a cut request or reply is left to be read as
# part of the next message. (It does not reset the DMA: the driver resets that itself.)
connect_bd_net [get_bd_pins wq_glue_0/core_rst_n] [get_bd_pins [list \
    waferq_top_0/ap_rst_n rx_fifo/s_axis_aresetn tx_fifo/s_axis_aresetn]]

# --- interrupts: concat input i is IRQ_F2P[i]; the device tree follows the same order ----------
set wq_irq_pin [dict create \
    dma_mm2s axi_dma_0/mm2s_introut \
    dma_s2mm axi_dma_0/s2mm_introut \
    hls_core waferq_top_0/interrupt]
set i 0
foreach src $wq_irq_order {
    connect_bd_net [get_bd_pins [dict get $wq_irq_pin $src]] [get_bd_pins irq_concat/In$i]
    incr i
}
connect_bd_net [get_bd_pins irq_concat/dout] [get_bd_pins ps7/IRQ_F2P]

# --- address map ---------------------------------------------------------------------------------
set wq_slave_seg [dict create \
    dma axi_dma_0/S_AXI_LITE/Reg \
    csr wq_glue_0/s_axil/reg0 \
    hls_ctrl waferq_top_0/s_axi_control/Reg]
foreach name [dict keys $wq_slave_seg] {
    assign_bd_address -target_address_space /ps7/Data \
        -offset $wq_addr_base($name) -range $wq_addr_range($name) \
        [get_bd_addr_segs [dict get $wq_slave_seg $name]]
}
foreach space {Data_SG Data_MM2S Data_S2MM} {
    assign_bd_address -target_address_space /axi_dma_0/$space \
        [get_bd_addr_segs ps7/S_AXI_HP0/HP0_DDR_LOWOCM]
}

validate_bd_design
save_bd_design
