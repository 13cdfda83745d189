/*
 * wq_frame_guard: AXI-Stream frame guard between the accelerator's TX stream
 * and the AXI-Stream TX FIFO in front of the AXI DMA S2MM channel.
 *
 * Guarantee: every word that leaves on m_axis belongs to a frame that ends
 * with TLAST, so the S2MM transfer always completes, whatever the core does.
 *
 * A message is open from its first word until the word with TLAST. The guard
 * passes words unchanged (full throughput) and closes an open message itself
 * when
 *   - OVERLONG: the message's MAX_WORDS-th word passes without TLAST;
 *   - TIMEOUT:  the guard was ready and the upstream offered no word for
 *               timeout_cycles cycles (0 disables). Cycles in which the
 *               guard is not ready (downstream backpressure) never count;
 *               the idle count restarts at every accepted word;
 *   - RESET:    soft_reset is high (the core is being reset mid-message).
 *
 * Closing tail: the words already sent cannot be recalled, so the guard
 * appends one complete, well-formed ERROR reply (protocol/stream.py) and puts
 * TLAST on its last word. The DMA buffer then holds
 *
 *     partial words (k >= 1) | 0x575102FF  2  tag  code  k  checksum(TLAST)
 *
 *   word 0  header   {MAGIC 0x5751, VERSION 0x02, OP_ERROR 0xFF} (protocol/stream.py)
 *   word 1  length   2
 *   word 2  tag      word 2 of the cut message if it passed (k >= 3), else 0
 *   word 3  code     WQ_GUARD_ERR_TIMEOUT (7), _OVERLONG (8) or _RESET (9)
 *   word 4  detail   k, the number of the cut message's words passed
 *   word 5  checksum sum mod 2**32 of words 0..4, TLAST
 *
 * The host recognises a guard-closed frame by its last WQ_GUARD_TAIL_WORDS (6)
 * words decoding as an ERROR reply with a guard code. The longest frame on
 * m_axis is MAX_WORDS + 6 words: size the S2MM buffer for it.
 *
 * After a TIMEOUT or OVERLONG close the guard discards (with tready high) the
 * rest of the upstream message up to and including its TLAST word, then passes
 * the next message.
 *
 * soft_reset resets the core, so whatever the core sends after it is a new
 * message and the rest of a cut message never comes:
 *   - while soft_reset is high the guard takes no word (s_axis_tready low,
 *     whatever the state). A core in reset drives TVALID low anyway
 *     (IHI 0051A 2.7.2); the guard does not rely on it;
 *   - an open message is closed with a RESET tail, then the guard passes;
 *   - during a TIMEOUT or OVERLONG tail, the tail is finished and the
 *     discarding that would follow is skipped: the guard then passes;
 *   - while discarding, the discarding stops: the guard passes;
 *   - while idle, nothing else happens.
 * A tail is always finished. One soft_reset pulse, however long, gives at
 * most one tail: no message can open while the pulse lasts.
 *
 * timeout_cycles is read every cycle: lowering it below the idle count of an
 * open message closes the message on the next idle cycle; 0 stops the count
 * (it resumes where it was if timeout_cycles becomes non-zero again).
 *
 * Counters (wrap at 2**32, cleared by counters_clear): frames_ok counts
 * messages passed with their own TLAST, frames_error those among them whose
 * header is an ERROR reply, frames_timeout and frames_overlong the closes
 * (a RESET close is not counted). Status: msg_open, closing, dropping.
 *
 * The output is a skid register: m_axis_* are registered, s_axis_tready
 * depends on registers (and soft_reset) only.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module wq_frame_guard #
(
    // Longest message passed, in words including the TLAST word (>= 4, the shortest message);
    // the block design sets contract/board.toml [guard] max_words, which bounds the cores'
    // INFER_BATCH replies (hls/batch.py: 1,024 records of 11 words, 11,268 words)
    parameter MAX_WORDS = 16384
)
(
    input  wire        clk,
    input  wire        rst,

    /*
     * Control and status (from / to wq_csr)
     */
    input  wire        soft_reset,
    input  wire [31:0] timeout_cycles,
    input  wire        counters_clear,
    output wire [31:0] frames_ok,
    output wire [31:0] frames_timeout,
    output wire [31:0] frames_overlong,
    output wire [31:0] frames_error,
    output wire        msg_open,
    output wire        closing,
    output wire        dropping,

    /*
     * AXI-Stream input (accelerator TX)
     */
    input  wire [31:0] s_axis_tdata,
    input  wire        s_axis_tvalid,
    output wire        s_axis_tready,
    input  wire        s_axis_tlast,

    /*
     * AXI-Stream output (TX FIFO / DMA S2MM)
     */
    output wire [31:0] m_axis_tdata,
    output wire        m_axis_tvalid,
    input  wire        m_axis_tready,
    output wire        m_axis_tlast
);

`include "wq_csr_map.vh"

// Bits of the per-message word counter
localparam WORD_WIDTH = $clog2(MAX_WORDS + 1);

localparam [1:0]
    STATE_IDLE  = 2'd0,  // between messages
    STATE_PASS  = 2'd1,  // a message is open
    STATE_CLOSE = 2'd2,  // writing the ERROR tail
    STATE_DROP  = 2'd3;  // discarding the rest of a closed message

localparam [1:0]
    REASON_TIMEOUT  = 2'd0,
    REASON_OVERLONG = 2'd1,
    REASON_RESET    = 2'd2;

localparam [31:0] ERROR_HEADER = {WQ_MAGIC[15:0], WQ_VERSION[7:0], WQ_OP_ERROR[7:0]};

// check configuration
generate
    if (MAX_WORDS < 4) begin : g_bad_max_words
        initial begin
            $error("Error: MAX_WORDS must be at least 4, the shortest message (instance %m)");
            $finish;
        end
    end
endgenerate

reg [1:0] state_reg = STATE_IDLE, state_next;
reg [1:0] reason_reg = REASON_TIMEOUT, reason_next;
reg resync_reg = 1'b0, resync_next;
reg [WORD_WIDTH-1:0] word_count_reg = 0, word_count_next;
reg [31:0] stall_count_reg = 0, stall_count_next;
reg [31:0] tag_reg = 0, tag_next;
reg is_error_reg = 1'b0, is_error_next;
reg [2:0] tail_idx_reg = 0, tail_idx_next;
reg [31:0] sum_reg = 0, sum_next;

reg [31:0] frames_ok_reg = 0, frames_ok_next;
reg [31:0] frames_timeout_reg = 0, frames_timeout_next;
reg [31:0] frames_overlong_reg = 0, frames_overlong_next;
reg [31:0] frames_error_reg = 0, frames_error_next;

// output skid register
reg [31:0] out_data_reg = 0;
reg out_last_reg = 1'b0;
reg out_valid_reg = 1'b0, out_valid_next;
reg [31:0] skid_data_reg = 0;
reg skid_last_reg = 1'b0;
reg skid_valid_reg = 1'b0, skid_valid_next;
reg store_int_to_out;
reg store_int_to_skid;
reg store_skid_to_out;

// internal stream into the skid register
reg [31:0] int_data;
reg int_last;
reg int_valid;
wire int_ready = !skid_valid_reg;
reg s_axis_tready_int;

reg [31:0] tail_word;
reg [31:0] tail_code;

wire s_accept = s_axis_tvalid && s_axis_tready_int;
wire header_is_error = s_axis_tdata == ERROR_HEADER;
wire [WORD_WIDTH-1:0] word_count_inc = word_count_reg + 1'b1;
wire [31:0] stall_count_inc = stall_count_reg + 1'b1;

assign s_axis_tready = s_axis_tready_int;
assign m_axis_tdata = out_data_reg;
assign m_axis_tvalid = out_valid_reg;
assign m_axis_tlast = out_last_reg;

assign frames_ok = frames_ok_reg;
assign frames_timeout = frames_timeout_reg;
assign frames_overlong = frames_overlong_reg;
assign frames_error = frames_error_reg;
assign msg_open = state_reg == STATE_PASS;
assign closing = state_reg == STATE_CLOSE;
assign dropping = state_reg == STATE_DROP;

always @* begin
    case (reason_reg)
        REASON_OVERLONG: tail_code = WQ_GUARD_ERR_OVERLONG;
        REASON_RESET:    tail_code = WQ_GUARD_ERR_RESET;
        default:         tail_code = WQ_GUARD_ERR_TIMEOUT;
    endcase
    case (tail_idx_reg)
        3'd0:    tail_word = ERROR_HEADER;
        3'd1:    tail_word = 32'd2;
        3'd2:    tail_word = tag_reg;
        3'd3:    tail_word = tail_code;
        3'd4:    tail_word = {{(32-WORD_WIDTH){1'b0}}, word_count_reg};
        default: tail_word = sum_reg;
    endcase
end

// frame state machine
always @* begin
    state_next = state_reg;
    reason_next = reason_reg;
    resync_next = resync_reg;
    word_count_next = word_count_reg;
    stall_count_next = stall_count_reg;
    tag_next = tag_reg;
    is_error_next = is_error_reg;
    tail_idx_next = tail_idx_reg;
    sum_next = sum_reg;

    frames_ok_next = counters_clear ? 32'd0 : frames_ok_reg;
    frames_timeout_next = counters_clear ? 32'd0 : frames_timeout_reg;
    frames_overlong_next = counters_clear ? 32'd0 : frames_overlong_reg;
    frames_error_next = counters_clear ? 32'd0 : frames_error_reg;

    int_data = s_axis_tdata;
    int_last = s_axis_tlast;
    int_valid = 1'b0;
    s_axis_tready_int = 1'b0;

    case (state_reg)
        STATE_IDLE, STATE_PASS: begin
            // no word is taken while soft_reset is high; it closes an open message
            int_valid = s_axis_tvalid && !soft_reset;
            s_axis_tready_int = int_ready && !soft_reset;
            if (state_reg == STATE_PASS && soft_reset) begin
                reason_next = REASON_RESET;
                resync_next = 1'b1;
                tail_idx_next = 3'd0;
                sum_next = 32'd0;
                state_next = STATE_CLOSE;
            end else if (s_accept) begin
                stall_count_next = 32'd0;
                if (state_reg == STATE_IDLE) begin
                    word_count_next = 1;
                    tag_next = 32'd0;
                    is_error_next = header_is_error;
                end else begin
                    word_count_next = word_count_inc;
                    if (word_count_reg == 2) begin
                        tag_next = s_axis_tdata;
                    end
                end
                if (s_axis_tlast) begin
                    frames_ok_next = frames_ok_next + 1'b1;
                    if (state_reg == STATE_IDLE ? header_is_error : is_error_reg) begin
                        frames_error_next = frames_error_next + 1'b1;
                    end
                    state_next = STATE_IDLE;
                end else if (state_reg == STATE_PASS && {{(32-WORD_WIDTH){1'b0}}, word_count_inc} == MAX_WORDS) begin
                    reason_next = REASON_OVERLONG;
                    resync_next = 1'b0;
                    tail_idx_next = 3'd0;
                    sum_next = 32'd0;
                    state_next = STATE_CLOSE;
                end else begin
                    state_next = STATE_PASS;
                end
            end else if (state_reg == STATE_PASS && int_ready && timeout_cycles != 0) begin
                // upstream idle while the guard is ready
                stall_count_next = stall_count_inc;
                if (stall_count_inc >= timeout_cycles) begin
                    stall_count_next = 32'd0;
                    reason_next = REASON_TIMEOUT;
                    resync_next = 1'b0;
                    tail_idx_next = 3'd0;
                    sum_next = 32'd0;
                    state_next = STATE_CLOSE;
                end
            end
        end
        STATE_CLOSE: begin
            int_data = tail_word;
            int_last = tail_idx_reg == 3'd5;
            int_valid = 1'b1;
            if (soft_reset) begin
                resync_next = 1'b1;
            end
            if (int_ready) begin
                sum_next = sum_reg + tail_word;
                tail_idx_next = tail_idx_reg + 1'b1;
                if (tail_idx_reg == 3'd5) begin
                    if (reason_reg == REASON_TIMEOUT) begin
                        frames_timeout_next = frames_timeout_next + 1'b1;
                    end
                    if (reason_reg == REASON_OVERLONG) begin
                        frames_overlong_next = frames_overlong_next + 1'b1;
                    end
                    state_next = (resync_reg || soft_reset) ? STATE_IDLE : STATE_DROP;
                end
            end
        end
        default: begin
            // STATE_DROP: swallow words up to and including TLAST
            s_axis_tready_int = !soft_reset;
            if (soft_reset || (s_axis_tvalid && s_axis_tlast)) begin
                state_next = STATE_IDLE;
            end
        end
    endcase
end

// output skid register
always @* begin
    out_valid_next = out_valid_reg;
    skid_valid_next = skid_valid_reg;
    store_int_to_out = 1'b0;
    store_int_to_skid = 1'b0;
    store_skid_to_out = 1'b0;

    if (m_axis_tready || !out_valid_reg) begin
        // the output word leaves (or the slot is empty)
        if (skid_valid_reg) begin
            out_valid_next = 1'b1;
            skid_valid_next = 1'b0;
            store_skid_to_out = 1'b1;
        end else begin
            out_valid_next = int_valid;
            store_int_to_out = int_valid;
        end
    end else if (int_valid && int_ready) begin
        // output stalled: park the accepted word
        skid_valid_next = 1'b1;
        store_int_to_skid = 1'b1;
    end
end

always @(posedge clk) begin
    state_reg <= state_next;
    reason_reg <= reason_next;
    resync_reg <= resync_next;
    word_count_reg <= word_count_next;
    stall_count_reg <= stall_count_next;
    tag_reg <= tag_next;
    is_error_reg <= is_error_next;
    tail_idx_reg <= tail_idx_next;
    sum_reg <= sum_next;

    frames_ok_reg <= frames_ok_next;
    frames_timeout_reg <= frames_timeout_next;
    frames_overlong_reg <= frames_overlong_next;
    frames_error_reg <= frames_error_next;

    out_valid_reg <= out_valid_next;
    skid_valid_reg <= skid_valid_next;

    if (store_int_to_out) begin
        out_data_reg <= int_data;
        out_last_reg <= int_last;
    end else if (store_skid_to_out) begin
        out_data_reg <= skid_data_reg;
        out_last_reg <= skid_last_reg;
    end

    if (store_int_to_skid) begin
        skid_data_reg <= int_data;
        skid_last_reg <= int_last;
    end

    if (rst) begin
        state_reg <= STATE_IDLE;
        reason_reg <= REASON_TIMEOUT;
        resync_reg <= 1'b0;
        word_count_reg <= 0;
        stall_count_reg <= 32'd0;
        tag_reg <= 32'd0;
        is_error_reg <= 1'b0;
        tail_idx_reg <= 3'd0;
        sum_reg <= 32'd0;
        frames_ok_reg <= 32'd0;
        frames_timeout_reg <= 32'd0;
        frames_overlong_reg <= 32'd0;
        frames_error_reg <= 32'd0;
        out_valid_reg <= 1'b0;
        skid_valid_reg <= 1'b0;
    end
end

endmodule

`resetall
