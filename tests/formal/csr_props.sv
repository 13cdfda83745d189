// Formal properties of zybo_z7/rtl/wq_csr.v (AXI4-Lite slave, IHI 0022 A3).
// Input rules (the master's side) are assumptions; the slave's rules are assertions.
// The module is instantiated unmodified; the runner strips its Verilog initialisers,
// so every register starts from an arbitrary value and only rst brings it to order.
`default_nettype none

module formal_wq_csr (
    input wire        clk,
    input wire        rst,
    input wire [7:0]  awaddr,
    input wire [2:0]  awprot,
    input wire        awvalid,
    input wire [31:0] wdata,
    input wire [3:0]  wstrb,
    input wire        wvalid,
    input wire        bready,
    input wire [7:0]  araddr,
    input wire [2:0]  arprot,
    input wire        arvalid,
    input wire        rready,
    input wire [31:0] frames_ok,
    input wire [31:0] frames_timeout,
    input wire [31:0] frames_overlong,
    input wire [31:0] frames_error,
    input wire        msg_open,
    input wire        closing,
    input wire        dropping
);

`include "wq_csr_map.vh"

wire awready, wready, bvalid, arready, rvalid, soft_reset, counters_clear;
wire [1:0] bresp, rresp;
wire [31:0] rdata, timeout_cycles;

wq_csr #(.ADDR_WIDTH(8), .SOFT_RESET_CYCLES(3)) dut (
    .clk(clk), .rst(rst),
    .s_axil_awaddr(awaddr), .s_axil_awprot(awprot), .s_axil_awvalid(awvalid),
    .s_axil_awready(awready), .s_axil_wdata(wdata), .s_axil_wstrb(wstrb),
    .s_axil_wvalid(wvalid), .s_axil_wready(wready), .s_axil_bresp(bresp),
    .s_axil_bvalid(bvalid), .s_axil_bready(bready), .s_axil_araddr(araddr),
    .s_axil_arprot(arprot), .s_axil_arvalid(arvalid), .s_axil_arready(arready),
    .s_axil_rdata(rdata), .s_axil_rresp(rresp), .s_axil_rvalid(rvalid),
    .s_axil_rready(rready), .soft_reset(soft_reset), .counters_clear(counters_clear),
    .timeout_cycles(timeout_cycles), .frames_ok(frames_ok), .frames_timeout(frames_timeout),
    .frames_overlong(frames_overlong), .frames_error(frames_error), .msg_open(msg_open),
    .closing(closing), .dropping(dropping)
);

// the wrapper's own registers keep their initialisers: f_past_valid is 0 at the start only
reg f_past_valid = 1'b0;
reg f_past_rst = 1'b1;
always @(posedge clk) begin
    f_past_valid <= 1'b1;
    f_past_rst <= rst;
end

// outstanding handshakes: AW, W and AR taken, not yet answered (at most one each)
reg [1:0] f_aw = 0, f_w = 0, f_ar = 0;
wire aw_hs = awvalid && awready;
wire w_hs = wvalid && wready;
wire b_hs = bvalid && bready;
wire ar_hs = arvalid && arready;
wire r_hs = rvalid && rready;
always @(posedge clk) begin
    f_aw <= f_aw + aw_hs - b_hs;
    f_w <= f_w + w_hs - b_hs;
    f_ar <= f_ar + ar_hs - r_hs;
    if (rst) begin
        f_aw <= 0;
        f_w <= 0;
        f_ar <= 0;
    end
end

// ---- assumptions: the master (IHI 0022 A3.2.1, A3.1.2) ----
always @* begin
    if (!f_past_valid) assume(rst);
    // a master drives its VALIDs low during reset
    if (rst || f_past_rst) assume(!awvalid && !wvalid && !arvalid);
end
always @(posedge clk) if (f_past_valid && !$past(rst) && !rst) begin
    // VALID held, payload stable, until READY
    if ($past(awvalid && !awready)) assume(awvalid && $stable(awaddr) && $stable(awprot));
    if ($past(wvalid && !wready)) assume(wvalid && $stable(wdata) && $stable(wstrb));
    if ($past(arvalid && !arready)) assume(arvalid && $stable(araddr) && $stable(arprot));
end

// ---- assertions: the slave ----
`ifdef P_STABLE
// BVALID/RVALID held and the response stable until READY (A3.2.1)
always @(posedge clk) if (f_past_valid && !$past(rst) && !rst) begin
    if ($past(bvalid && !bready)) assert(bvalid && $stable(bresp));
    if ($past(rvalid && !rready)) assert(rvalid && $stable(rdata) && $stable(rresp));
end
`endif

`ifdef P_ORDER
// BVALID only after both the AW and the W handshake, RVALID only after AR (A3.3.1)
always @* if (f_past_valid && !f_past_rst) begin
    if (bvalid) assert(f_aw == 1 && f_w == 1);
    if (rvalid) assert(f_ar == 1);
    assert(f_aw <= 1 && f_w <= 1 && f_ar <= 1);
    // no handshake is taken while its response is pending
    if (f_aw != 0) assert(!awready && !wready);
end
`endif

`ifdef P_WRITE
// a register changes only on the edge of a handshake that writes it, to the value written
wire [31:0] f_mask = {{8{wstrb[3]}}, {8{wstrb[2]}}, {8{wstrb[1]}}, {8{wstrb[0]}}};
always @(posedge clk) if (f_past_valid && !$past(rst)) begin
    if ($past(aw_hs && w_hs && {awaddr[7:2], 2'b00} == WQ_CSR_TIMEOUT_CYCLES_ADDR))
        assert(timeout_cycles == (($past(timeout_cycles) & ~$past(f_mask))
                                  | ($past(wdata) & $past(f_mask))));
    else
        assert($stable(timeout_cycles));
    // soft_reset starts only on a handshake writing CONTROL.SOFT_RESET
    if (soft_reset && !$past(soft_reset))
        assert($past(aw_hs && w_hs && {awaddr[7:2], 2'b00} == WQ_CSR_CONTROL_ADDR
                     && wstrb[0] && wdata[WQ_CSR_CONTROL_SOFT_RESET_BIT]));
    // read data is what the register held at the AR handshake
    if ($past(ar_hs && {araddr[7:2], 2'b00} == WQ_CSR_TIMEOUT_CYCLES_ADDR))
        assert(rvalid && rdata == $past(timeout_cycles));
end
`endif

`ifdef P_RESET
// from the first edge with rst high, every VALID and READY is low (A3.1.2), the
// registers hold their reset values, and the pulses are off
always @* if (f_past_valid && f_past_rst) begin
    assert(!bvalid && !rvalid && !awready && !wready && !arready);
    assert(timeout_cycles == WQ_CSR_TIMEOUT_CYCLES_RESET);
    assert(!soft_reset && !counters_clear);
end
`endif

`ifdef P_KNOWN
// run with X initial state (sat -set-init-undef -enable_undef): after reset no output is X
`define KNOWN(x) ((^(x)) !== 1'bx)
always @* if (f_past_valid) begin
    assert(`KNOWN({awready, wready, bvalid, arready, rvalid, soft_reset, counters_clear}));
    assert(`KNOWN(timeout_cycles));
    if (bvalid) assert(`KNOWN(bresp));
    if (rvalid) assert(`KNOWN({rdata, rresp}));
end
`endif

endmodule
