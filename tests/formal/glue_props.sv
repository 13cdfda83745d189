// Formal properties of zybo_z7/rtl/wq_glue_top.v: reset through aresetn (active low).
// From the first edge at which aresetn is sampled low, TVALID, BVALID and RVALID are low
// (IHI 0051A 2.7.2, IHI 0022 A3.1.2), and core_rst_n is low while aresetn is.
`default_nettype none

module formal_wq_glue_top (
    input wire        aclk,
    input wire        aresetn,
    input wire [7:0]  awaddr,
    input wire        awvalid,
    input wire [31:0] wdata,
    input wire [3:0]  wstrb,
    input wire        wvalid,
    input wire        bready,
    input wire [7:0]  araddr,
    input wire        arvalid,
    input wire        rready,
    input wire [31:0] s_tdata,
    input wire        s_tvalid,
    input wire        s_tlast,
    input wire        m_tready
);

wire core_rst_n, awready, wready, bvalid, arready, rvalid, s_tready, m_tvalid, m_tlast;
wire [1:0] bresp, rresp;
wire [31:0] rdata, m_tdata;

wq_glue_top #(.MAX_WORDS(4), .SOFT_RESET_CYCLES(3)) dut (
    .aclk(aclk), .aresetn(aresetn), .core_rst_n(core_rst_n),
    .s_axil_awaddr(awaddr), .s_axil_awprot(3'd0), .s_axil_awvalid(awvalid),
    .s_axil_awready(awready), .s_axil_wdata(wdata), .s_axil_wstrb(wstrb),
    .s_axil_wvalid(wvalid), .s_axil_wready(wready), .s_axil_bresp(bresp),
    .s_axil_bvalid(bvalid), .s_axil_bready(bready), .s_axil_araddr(araddr),
    .s_axil_arprot(3'd0), .s_axil_arvalid(arvalid), .s_axil_arready(arready),
    .s_axil_rdata(rdata), .s_axil_rresp(rresp), .s_axil_rvalid(rvalid),
    .s_axil_rready(rready),
    .s_axis_tdata(s_tdata), .s_axis_tvalid(s_tvalid), .s_axis_tready(s_tready),
    .s_axis_tlast(s_tlast), .m_axis_tdata(m_tdata), .m_axis_tvalid(m_tvalid),
    .m_axis_tready(m_tready), .m_axis_tlast(m_tlast)
);

reg f_past_valid = 1'b0;
reg f_past_rst = 1'b1;
always @(posedge aclk) begin
    f_past_valid <= 1'b1;
    f_past_rst <= !aresetn;
end

always @* if (!f_past_valid) assume(!aresetn);

`ifdef P_RESET
always @* begin
    if (f_past_valid && f_past_rst) assert(!m_tvalid && !bvalid && !rvalid);
    if (!aresetn) assert(!core_rst_n);
end
`endif

endmodule
