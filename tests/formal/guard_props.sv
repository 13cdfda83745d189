// Formal properties of zybo_z7/rtl/wq_frame_guard.v (AXI4-Stream, IHI 0051A), with a
// reference model of its header comment for the frame integrity check.
// The upstream's rules are assumptions; soft_reset, timeout_cycles, counters_clear and
// the downstream TREADY are free. The runner strips the module's Verilog initialisers.
`default_nettype none

module formal_wq_frame_guard (
    input wire        clk,
    input wire        rst,
    input wire        soft_reset,
    input wire [31:0] timeout_cycles,
    input wire        counters_clear,
    input wire [31:0] s_tdata,
    input wire        s_tvalid,
    input wire        s_tlast,
    input wire        m_tready,
    input wire [7:0]  f_n
);

`include "wq_csr_map.vh"

localparam MAX_WORDS = 4;

wire s_tready, m_tvalid, m_tlast, msg_open, closing, dropping;
wire [31:0] m_tdata, frames_ok, frames_timeout, frames_overlong, frames_error;

wq_frame_guard #(.MAX_WORDS(MAX_WORDS)) dut (
    .clk(clk), .rst(rst), .soft_reset(soft_reset), .timeout_cycles(timeout_cycles),
    .counters_clear(counters_clear), .frames_ok(frames_ok), .frames_timeout(frames_timeout),
    .frames_overlong(frames_overlong), .frames_error(frames_error), .msg_open(msg_open),
    .closing(closing), .dropping(dropping),
    .s_axis_tdata(s_tdata), .s_axis_tvalid(s_tvalid), .s_axis_tready(s_tready),
    .s_axis_tlast(s_tlast), .m_axis_tdata(m_tdata), .m_axis_tvalid(m_tvalid),
    .m_axis_tready(m_tready), .m_axis_tlast(m_tlast)
);

reg f_past_valid = 1'b0;
reg f_past_rst = 1'b1;
always @(posedge clk) begin
    f_past_valid <= 1'b1;
    f_past_rst <= rst;
end

// ---- assumptions: the upstream master (IHI 0051A 2.2.1, 2.7.2) ----
always @* begin
    if (!f_past_valid) assume(rst);
    if (rst || f_past_rst) assume(!s_tvalid);
end
always @(posedge clk) if (f_past_valid && !$past(rst) && !rst)
    if ($past(s_tvalid && !s_tready)) assume(s_tvalid && $stable(s_tdata) && $stable(s_tlast));

`ifdef P_STABLE
// TVALID held until TREADY; TDATA and TLAST stable while stalled
always @(posedge clk) if (f_past_valid && !$past(rst) && !rst)
    if ($past(m_tvalid && !m_tready)) assert(m_tvalid && $stable(m_tdata) && $stable(m_tlast));
`endif

`ifdef P_RESET
// from the first edge with rst high: TVALID low, no message, counters zero
always @* if (f_past_valid && f_past_rst) begin
    assert(!m_tvalid && !msg_open && !closing && !dropping);
    assert(frames_ok == 0 && frames_timeout == 0 && frames_overlong == 0 && frames_error == 0);
end
`endif

`ifdef P_SOFT_RESET
// no word is taken while soft_reset is high, and no message opens on such an edge:
// one pulse gives at most one tail
always @* if (f_past_valid && !f_past_rst && soft_reset) assert(!s_tready);
always @(posedge clk) if (f_past_valid && !$past(rst) && $past(soft_reset))
    assert(!(msg_open && !$past(msg_open)));
`endif

`ifdef P_FRAME
// Reference model of the header comment: the words m_axis must carry, in order.
// To keep the bounded check quick, data words use their low 4 bits (the guard passes
// data through unchanged, and the words it computes from data, tag and checksum, are
// still checked) and timeout_cycles stays below 4.
always @* begin
    assume(s_tdata[31:4] == 0);
    assume(timeout_cycles < 4);
end
localparam [31:0] HEADER = {WQ_MAGIC[15:0], WQ_VERSION[7:0], WQ_OP_ERROR[7:0]};
localparam [1:0] M_IDLE = 2'd0, M_PASS = 2'd1, M_DROP = 2'd2;
reg [1:0] m_state = M_IDLE;
reg [2:0] m_k = 0;           // words of the open message passed
reg [31:0] m_tag = 0;        // its word 2, once passed
reg [31:0] m_idle = 0;       // idle cycles while the guard was ready
// Rather than a queue of every expected word, one position f_n (free, held constant) of
// the expected stream is tracked: the word the model puts there must be the word that
// leaves there. As f_n is arbitrary, this covers every position.
reg [7:0] n_in = 0;          // expected words so far
reg [7:0] n_out = 0;         // words that left
reg [32:0] f_word = 0;       // the expected word at position f_n
reg f_have = 1'b0;
integer i;

wire acc = s_tvalid && s_tready;
wire [2:0] k_next = m_k + 1'b1;
wire [31:0] tag_next = (m_state == M_PASS && m_k == 3'd2) ? s_tdata : m_tag;

reg [32:0] push [0:6];
reg [2:0] n_push;
reg [1:0] state_next;
reg [31:0] idle_next;
reg [2:0] k_upd;

task tail(input [31:0] code, input [31:0] k, input [31:0] tag, input integer at);
    begin
        push[at]     = {1'b0, HEADER};
        push[at + 1] = {1'b0, 32'd2};
        push[at + 2] = {1'b0, tag};
        push[at + 3] = {1'b0, code};
        push[at + 4] = {1'b0, k};
        push[at + 5] = {1'b1, HEADER + 32'd2 + tag + code + k};
    end
endtask

always @* begin
    for (i = 0; i < 7; i = i + 1) push[i] = 33'd0;
    n_push = 0;
    state_next = m_state;
    idle_next = m_idle;
    k_upd = m_k;
    if (soft_reset) begin
        // an open message gets a RESET tail; discarding stops
        if (m_state == M_PASS) begin
            tail(WQ_GUARD_ERR_RESET, {29'd0, m_k}, m_tag, 0);
            n_push = 6;
        end
        state_next = M_IDLE;
    end else if (acc) begin
        idle_next = 0;
        if (m_state == M_DROP) begin
            if (s_tlast) state_next = M_IDLE;
        end else begin
            push[0] = {s_tlast, s_tdata};
            n_push = 1;
            k_upd = m_state == M_IDLE ? 3'd1 : k_next;
            if (s_tlast) begin
                state_next = M_IDLE;
            end else if (m_state == M_PASS && k_next == MAX_WORDS) begin
                tail(WQ_GUARD_ERR_OVERLONG, MAX_WORDS, tag_next, 1);
                n_push = 7;
                state_next = M_DROP;
            end else begin
                state_next = M_PASS;
            end
        end
    end else if (m_state == M_PASS && s_tready && timeout_cycles != 0) begin
        idle_next = m_idle + 1;
        if (m_idle + 1 >= timeout_cycles) begin
            tail(WQ_GUARD_ERR_TIMEOUT, {29'd0, m_k}, m_tag, 0);
            n_push = 6;
            idle_next = 0;
            state_next = M_DROP;
        end
    end
end

wire m_hs = m_tvalid && m_tready;
reg [7:0] f_n_q = 0;
always @(posedge clk) f_n_q <= f_n;
always @* if (f_past_valid) assume(f_n == f_n_q);  // held from the first cycle on
always @(posedge clk) begin
    m_state <= state_next;
    m_idle <= idle_next;
    m_k <= k_upd;
    if (acc && m_state == M_IDLE) m_tag <= 0;
    else if (acc) m_tag <= tag_next;
    for (i = 0; i < 7; i = i + 1)
        if (i < n_push && n_in + i == f_n) begin
            f_word <= push[i];
            f_have <= 1'b1;
        end
    n_in <= n_in + n_push;
    n_out <= n_out + m_hs;
    if (rst) begin
        m_state <= M_IDLE;
        m_idle <= 0;
        m_k <= 0;
        m_tag <= 0;
        n_in <= 0;
        n_out <= 0;
        f_have <= 1'b0;
    end
end

always @* if (f_past_valid && !f_past_rst && !rst) begin
    // no word leaves that the model did not expect, and each is the one expected there
    if (m_hs) assert(n_out < n_in);
    if (m_hs && n_out == f_n) assert(f_have && {m_tlast, m_tdata} == f_word);
    // nothing is held back beyond the skid register and one tail
    assert(n_in - n_out <= 9);
end
`endif

`ifdef P_KNOWN
`define KNOWN(x) ((^(x)) !== 1'bx)
always @* if (f_past_valid && !rst) begin
    assert(`KNOWN({s_tready, m_tvalid, msg_open, closing, dropping}));
    assert(`KNOWN({frames_ok, frames_timeout, frames_overlong, frames_error}));
    if (m_tvalid) assert(`KNOWN({m_tdata, m_tlast}));
end
`endif

endmodule
