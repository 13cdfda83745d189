/*
 * wq_csr: AXI4-Lite control/status registers of the waferq PL glue.
 *
 * The register map (offsets, reset values, bit positions) comes from
 * zybo_z7/csr_map.py through the generated include wq_csr_map.vh; this file
 * names no offset itself. See csr_map.py for the meaning of each register.
 *
 * Every access is answered OKAY: writes to read-only registers are ignored,
 * unmapped offsets read 0. Byte strobes are honoured on RW registers.
 * One write and one read are in flight at most.
 *
 * Ordering (IHI 0022 A3.3.1): AWREADY and WREADY rise together, for one
 * cycle, once both AWVALID and WVALID are high (a master holds VALID until
 * READY, so both handshakes complete on the same edge). The register write
 * takes effect on that handshake edge, and BVALID rises after it. ARREADY
 * rises for one cycle when ARVALID is high and no read data is pending; RDATA
 * is sampled on the AR handshake edge and RVALID rises after it. All outputs
 * are registers: no VALID or READY depends combinationally on an input.
 * rst is synchronous: from the first edge with rst high, every VALID and
 * READY is low.
 *
 * CONTROL.SOFT_RESET (write 1) raises soft_reset for SOFT_RESET_CYCLES cycles
 * and reads 1 while it lasts. CONTROL.CLEAR_COUNTERS (write 1) raises
 * counters_clear for one cycle. Both are self-clearing.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module wq_csr #
(
    // Width of the AXI4-Lite address; the low WQ_CSR_ADDR_WIDTH bits are decoded
    parameter ADDR_WIDTH = 8,
    // Value of the TOPOLOGY_HASH register: the hash of the core this bitstream holds
    parameter [31:0] TOPOLOGY_HASH = 32'h0,
    // Value of the MAX_WORDS register: the frame guard's MAX_WORDS parameter
    parameter [31:0] MAX_WORDS = 32'd16384,
    // Length of the soft_reset pulse in clock cycles (>= 1)
    parameter SOFT_RESET_CYCLES = 16
)
(
    input  wire                   clk,
    input  wire                   rst,

    /*
     * AXI4-Lite slave (prot is ignored, address bits [1:0] too)
     */
    /* verilator lint_off UNUSEDSIGNAL */
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
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire                   s_axil_arvalid,
    output wire                   s_axil_arready,
    output wire [31:0]            s_axil_rdata,
    output wire [1:0]             s_axil_rresp,
    output wire                   s_axil_rvalid,
    input  wire                   s_axil_rready,

    /*
     * Control outputs
     */
    output wire                   soft_reset,
    output wire                   counters_clear,
    output wire [31:0]            timeout_cycles,

    /*
     * Status inputs (from wq_frame_guard)
     */
    input  wire [31:0]            frames_ok,
    input  wire [31:0]            frames_timeout,
    input  wire [31:0]            frames_overlong,
    input  wire [31:0]            frames_error,
    input  wire                   msg_open,
    input  wire                   closing,
    input  wire                   dropping
);

`include "wq_csr_map.vh"

// Address bits decoded
localparam AW = WQ_CSR_ADDR_WIDTH;
// Bits of the soft-reset pulse counter
localparam RST_COUNT_WIDTH = $clog2(SOFT_RESET_CYCLES + 1);

// check configuration
generate
    if (ADDR_WIDTH < AW) begin : g_bad_addr_width
        initial begin
            $error("Error: ADDR_WIDTH must be at least WQ_CSR_ADDR_WIDTH (instance %m)");
            $finish;
        end
    end
    if (SOFT_RESET_CYCLES < 1) begin : g_bad_reset_cycles
        initial begin
            $error("Error: SOFT_RESET_CYCLES must be at least 1 (instance %m)");
            $finish;
        end
    end
endgenerate

reg awready_reg = 1'b0;
reg wready_reg = 1'b0;
reg bvalid_reg = 1'b0;
reg arready_reg = 1'b0;
reg rvalid_reg = 1'b0;
reg [31:0] rdata_reg = 32'd0;

reg [31:0] timeout_reg = WQ_CSR_TIMEOUT_CYCLES_RESET;
reg [31:0] scratch_reg = WQ_CSR_SCRATCH_RESET;
reg [RST_COUNT_WIDTH-1:0] rst_count_reg = 0;
reg clear_reg = 1'b0;

reg [31:0] rd_value;
reg [31:0] status_word;
reg [31:0] control_word;

wire [31:0] wr_addr = {{(32-AW){1'b0}}, s_axil_awaddr[AW-1:2], 2'b00};
wire [31:0] rd_addr = {{(32-AW){1'b0}}, s_axil_araddr[AW-1:2], 2'b00};
wire [31:0] wr_mask = {{8{s_axil_wstrb[3]}}, {8{s_axil_wstrb[2]}},
                       {8{s_axil_wstrb[1]}}, {8{s_axil_wstrb[0]}}};
// offer AWREADY/WREADY once both channels are valid and no response is pending
wire write_offer = s_axil_awvalid && s_axil_wvalid && !awready_reg && !bvalid_reg;
// the AW and W handshakes (they coincide: the READYs rise together)
wire write_hs = awready_reg && s_axil_awvalid && wready_reg && s_axil_wvalid;
// offer ARREADY when no read data is pending
wire read_offer = s_axil_arvalid && !arready_reg && !rvalid_reg;
wire read_hs = arready_reg && s_axil_arvalid;
wire soft_reset_active = rst_count_reg != 0;

assign s_axil_awready = awready_reg;
assign s_axil_wready = wready_reg;
assign s_axil_bresp = 2'b00;
assign s_axil_bvalid = bvalid_reg;
assign s_axil_arready = arready_reg;
assign s_axil_rdata = rdata_reg;
assign s_axil_rresp = 2'b00;
assign s_axil_rvalid = rvalid_reg;

assign soft_reset = soft_reset_active;
assign counters_clear = clear_reg;
assign timeout_cycles = timeout_reg;

always @* begin
    status_word = 32'd0;
    status_word[WQ_CSR_STATUS_MSG_OPEN_BIT] = msg_open;
    status_word[WQ_CSR_STATUS_CLOSING_BIT] = closing;
    status_word[WQ_CSR_STATUS_DROPPING_BIT] = dropping;
    status_word[WQ_CSR_STATUS_TIMEOUT_SEEN_BIT] = frames_timeout != 0;
    status_word[WQ_CSR_STATUS_OVERLONG_SEEN_BIT] = frames_overlong != 0;
    status_word[WQ_CSR_STATUS_SOFT_RESET_ACTIVE_BIT] = soft_reset_active;

    control_word = 32'd0;
    control_word[WQ_CSR_CONTROL_SOFT_RESET_BIT] = soft_reset_active;

    case (rd_addr)
        WQ_CSR_VERSION_ADDR:         rd_value = WQ_CSR_VERSION_RESET;
        WQ_CSR_TOPOLOGY_HASH_ADDR:   rd_value = TOPOLOGY_HASH;
        WQ_CSR_CONTROL_ADDR:         rd_value = control_word;
        WQ_CSR_STATUS_ADDR:          rd_value = status_word;
        WQ_CSR_TIMEOUT_CYCLES_ADDR:  rd_value = timeout_reg;
        WQ_CSR_FRAMES_OK_ADDR:       rd_value = frames_ok;
        WQ_CSR_FRAMES_TIMEOUT_ADDR:  rd_value = frames_timeout;
        WQ_CSR_FRAMES_OVERLONG_ADDR: rd_value = frames_overlong;
        WQ_CSR_FRAMES_ERROR_ADDR:    rd_value = frames_error;
        WQ_CSR_MAX_WORDS_ADDR:       rd_value = MAX_WORDS;
        WQ_CSR_SCRATCH_ADDR:         rd_value = scratch_reg;
        default:                     rd_value = 32'd0;
    endcase
end

always @(posedge clk) begin
    // write channel: offer AW and W together, write and answer on B after the handshake
    awready_reg <= 1'b0;
    wready_reg <= 1'b0;
    clear_reg <= 1'b0;
    if (bvalid_reg && s_axil_bready) begin
        bvalid_reg <= 1'b0;
    end
    if (soft_reset_active) begin
        rst_count_reg <= rst_count_reg - 1'b1;
    end
    if (write_offer) begin
        awready_reg <= 1'b1;
        wready_reg <= 1'b1;
    end
    if (write_hs) begin
        bvalid_reg <= 1'b1;
        case (wr_addr)
            WQ_CSR_CONTROL_ADDR: begin
                if (s_axil_wstrb[0] && s_axil_wdata[WQ_CSR_CONTROL_SOFT_RESET_BIT]) begin
                    rst_count_reg <= SOFT_RESET_CYCLES[RST_COUNT_WIDTH-1:0];
                end
                if (s_axil_wstrb[0] && s_axil_wdata[WQ_CSR_CONTROL_CLEAR_COUNTERS_BIT]) begin
                    clear_reg <= 1'b1;
                end
            end
            WQ_CSR_TIMEOUT_CYCLES_ADDR: begin
                timeout_reg <= (timeout_reg & ~wr_mask) | (s_axil_wdata & wr_mask);
            end
            WQ_CSR_SCRATCH_ADDR: begin
                scratch_reg <= (scratch_reg & ~wr_mask) | (s_axil_wdata & wr_mask);
            end
            default: begin
                // read-only or unmapped: ignored
            end
        endcase
    end

    // read channel
    arready_reg <= 1'b0;
    if (rvalid_reg && s_axil_rready) begin
        rvalid_reg <= 1'b0;
    end
    if (read_offer) begin
        arready_reg <= 1'b1;
    end
    if (read_hs) begin
        rvalid_reg <= 1'b1;
        rdata_reg <= rd_value;
    end

    if (rst) begin
        awready_reg <= 1'b0;
        wready_reg <= 1'b0;
        bvalid_reg <= 1'b0;
        arready_reg <= 1'b0;
        rvalid_reg <= 1'b0;
        rdata_reg <= 32'd0;
        timeout_reg <= WQ_CSR_TIMEOUT_CYCLES_RESET;
        scratch_reg <= WQ_CSR_SCRATCH_RESET;
        rst_count_reg <= 0;
        clear_reg <= 1'b0;
    end
end

endmodule

`resetall
