/*
 * wq_glue_top: the PL glue as the block design instantiates it.
 *
 * accelerator TX (s_axis) -> wq_frame_guard -> TX FIFO / DMA S2MM (m_axis)
 * AXI4-Lite (s_axil, from the Zynq GP0 interconnect) -> wq_csr
 *
 * core_rst_n goes to the accelerator's ap_rst_n: low while aresetn is low or
 * while the CSR soft-reset pulse lasts. Clock and reset follow the Xilinx
 * block-design names (aclk, active-low aresetn); the blocks inside use an
 * active-high synchronous rst.
 *
 * aresetn comes from proc_sys_reset, already synchronous to aclk, and is used
 * as it is, not registered again: from the first edge at which aresetn is
 * sampled low, TVALID (m_axis), BVALID and RVALID are low and stay low until
 * after the first edge with aresetn high (IHI 0051A 2.7.2, IHI 0022 A3.1.2).
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module wq_glue_top #
(
    // Width of the AXI4-Lite address (at least WQ_CSR_ADDR_WIDTH)
    parameter ADDR_WIDTH = 8,
    // Topology hash of the core in this bitstream (TOPOLOGY_HASH register)
    parameter [31:0] TOPOLOGY_HASH = 32'h0,
    // Longest reply passed by the frame guard, in words
    parameter MAX_WORDS = 16384,
    // Length of the soft-reset pulse in clock cycles
    parameter SOFT_RESET_CYCLES = 16
)
(
    input  wire                   aclk,
    input  wire                   aresetn,
    output wire                   core_rst_n,

    /*
     * AXI4-Lite slave
     */
    input  wire [ADDR_WIDTH-1:0]  s_axil_awaddr,
    input  wire [2:0]             s_axil_awprot,
    input  wire                   s_axil_awvalid,
    output wire                   s_axil_awready,
    input  wire [31:0]            s_axil_wdata,
    input  wire [3:0]             s_axil_wstrb,
    input  wire                   s_axil_wvalid,
    output wire                   s_axil_wready,
    output wire [1:0]             s_axil_bresp,
    output wire                   s_axil_bvalid,
    input  wire                   s_axil_bready,
    input  wire [ADDR_WIDTH-1:0]  s_axil_araddr,
    input  wire [2:0]             s_axil_arprot,
    input  wire                   s_axil_arvalid,
    output wire                   s_axil_arready,
    output wire [31:0]            s_axil_rdata,
    output wire [1:0]             s_axil_rresp,
    output wire                   s_axil_rvalid,
    input  wire                   s_axil_rready,

    /*
     * AXI-Stream input (accelerator TX)
     */
    input  wire [31:0]            s_axis_tdata,
    input  wire                   s_axis_tvalid,
    output wire                   s_axis_tready,
    input  wire                   s_axis_tlast,

    /*
     * AXI-Stream output (TX FIFO / DMA S2MM)
     */
    output wire [31:0]            m_axis_tdata,
    output wire                   m_axis_tvalid,
    input  wire                   m_axis_tready,
    output wire                   m_axis_tlast
);

wire rst = !aresetn;

wire soft_reset;
wire counters_clear;
wire [31:0] timeout_cycles;
wire [31:0] frames_ok;
wire [31:0] frames_timeout;
wire [31:0] frames_overlong;
wire [31:0] frames_error;
wire msg_open;
wire closing;
wire dropping;

assign core_rst_n = !(rst || soft_reset);

wq_csr #(
    .ADDR_WIDTH(ADDR_WIDTH),
    .TOPOLOGY_HASH(TOPOLOGY_HASH),
    .MAX_WORDS(MAX_WORDS),
    .SOFT_RESET_CYCLES(SOFT_RESET_CYCLES)
)
csr_inst (
    .clk(aclk),
    .rst(rst),
    .s_axil_awaddr(s_axil_awaddr),
    .s_axil_awprot(s_axil_awprot),
    .s_axil_awvalid(s_axil_awvalid),
    .s_axil_awready(s_axil_awready),
    .s_axil_wdata(s_axil_wdata),
    .s_axil_wstrb(s_axil_wstrb),
    .s_axil_wvalid(s_axil_wvalid),
    .s_axil_wready(s_axil_wready),
    .s_axil_bresp(s_axil_bresp),
    .s_axil_bvalid(s_axil_bvalid),
    .s_axil_bready(s_axil_bready),
    .s_axil_araddr(s_axil_araddr),
    .s_axil_arprot(s_axil_arprot),
    .s_axil_arvalid(s_axil_arvalid),
    .s_axil_arready(s_axil_arready),
    .s_axil_rdata(s_axil_rdata),
    .s_axil_rresp(s_axil_rresp),
    .s_axil_rvalid(s_axil_rvalid),
    .s_axil_rready(s_axil_rready),
    .soft_reset(soft_reset),
    .counters_clear(counters_clear),
    .timeout_cycles(timeout_cycles),
    .frames_ok(frames_ok),
    .frames_timeout(frames_timeout),
    .frames_overlong(frames_overlong),
    .frames_error(frames_error),
    .msg_open(msg_open),
    .closing(closing),
    .dropping(dropping)
);

wq_frame_guard #(
    .MAX_WORDS(MAX_WORDS)
)
guard_inst (
    .clk(aclk),
    .rst(rst),
    .soft_reset(soft_reset),
    .timeout_cycles(timeout_cycles),
    .counters_clear(counters_clear),
    .frames_ok(frames_ok),
    .frames_timeout(frames_timeout),
    .frames_overlong(frames_overlong),
    .frames_error(frames_error),
    .msg_open(msg_open),
    .closing(closing),
    .dropping(dropping),
    .s_axis_tdata(s_axis_tdata),
    .s_axis_tvalid(s_axis_tvalid),
    .s_axis_tready(s_axis_tready),
    .s_axis_tlast(s_axis_tlast),
    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready),
    .m_axis_tlast(m_axis_tlast)
);

endmodule

`resetall
