// ==============================================================
// Hand-written fixture in the shape of a Vitis HLS Verilog top (tests/data/hls_syn/README.md)
// ==============================================================

`timescale 1 ns / 1 ps 

(* CORE_GENERATION_INFO="waferq_top_waferq_top,hls_ip_fixture" *)

module waferq_top (
        ap_clk,
        ap_rst_n,
        rx_TDATA,
        rx_TVALID,
        rx_TREADY,
        rx_TKEEP,
        rx_TSTRB,
        rx_TLAST,
        tx_TDATA,
        tx_TVALID,
        tx_TREADY,
        tx_TKEEP,
        tx_TSTRB,
        tx_TLAST,
        s_axi_control_AWVALID,
        s_axi_control_AWREADY,
        s_axi_control_AWADDR,
        s_axi_control_WVALID,
        s_axi_control_WREADY,
        s_axi_control_WDATA,
        s_axi_control_WSTRB,
        s_axi_control_ARVALID,
        s_axi_control_ARREADY,
        s_axi_control_ARADDR,
        s_axi_control_RVALID,
        s_axi_control_RREADY,
        s_axi_control_RDATA,
        s_axi_control_RRESP,
        s_axi_control_BVALID,
        s_axi_control_BREADY,
        s_axi_control_BRESP,
        interrupt
);

parameter    ap_ST_fsm_state1 = 3'd1;
parameter    C_S_AXI_CONTROL_DATA_WIDTH = 32;
parameter    C_S_AXI_CONTROL_ADDR_WIDTH = 4;
parameter    C_S_AXI_DATA_WIDTH = 32;

parameter C_S_AXI_CONTROL_WSTRB_WIDTH = (32 / 8);
parameter C_S_AXI_WSTRB_WIDTH = (32 / 8);

input   ap_clk;
input   ap_rst_n;
input  [31:0] rx_TDATA;
input   rx_TVALID;
output   rx_TREADY;
input  [3:0] rx_TKEEP;
input  [3:0] rx_TSTRB;
input  [0:0] rx_TLAST;
output  [31:0] tx_TDATA;
output   tx_TVALID;
input   tx_TREADY;
output  [3:0] tx_TKEEP;
output  [3:0] tx_TSTRB;
output  [0:0] tx_TLAST;
input   s_axi_control_AWVALID;
output   s_axi_control_AWREADY;
input  [C_S_AXI_CONTROL_ADDR_WIDTH - 1:0] s_axi_control_AWADDR;
input   s_axi_control_WVALID;
output   s_axi_control_WREADY;
input  [C_S_AXI_CONTROL_DATA_WIDTH - 1:0] s_axi_control_WDATA;
input  [C_S_AXI_CONTROL_WSTRB_WIDTH - 1:0] s_axi_control_WSTRB;
input   s_axi_control_ARVALID;
output   s_axi_control_ARREADY;
input  [C_S_AXI_CONTROL_ADDR_WIDTH - 1:0] s_axi_control_ARADDR;
output   s_axi_control_RVALID;
input   s_axi_control_RREADY;
output  [C_S_AXI_CONTROL_DATA_WIDTH - 1:0] s_axi_control_RDATA;
output  [1:0] s_axi_control_RRESP;
output   s_axi_control_BVALID;
input   s_axi_control_BREADY;
output  [1:0] s_axi_control_BRESP;
output   interrupt;

 reg    ap_rst_n_inv;
wire    ap_start;
reg    rx_TDATA_blk_n;

endmodule //waferq_top
