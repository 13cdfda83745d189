// wq_conv2d.h: 2-D convolution (any square kernel, stride, zero padding),
// bias, then requantization (ReLU-quant or signed). Dense channels (groups 1);
// the depthwise case is wq_dwconv.h. The window comes from line buffers
// (wq_swg.h lb_fill): the input array is read once, in order, fill_lanes codes
// a cycle; each output row is then one pass of the shared matrix-vector loop
// (wq_mvau.h) over its pixels, output groups and fan-in slices.
#ifndef WQ_CONV2D_H
#define WQ_CONV2D_H

#include "wq_common.h"
#include "wq_loader.h"
#include "wq_mvau.h"
#include "wq_requant.h"
#include "wq_swg.h"

namespace wq {

// Base of every generated conv config; the generator overrides each member.
struct conv2d_config {
    static const unsigned in_h = 1;           // input rows
    static const unsigned in_w = 1;           // input columns
    static const unsigned in_c = 1;           // input channels
    static const unsigned out_h = 1;          // (in_h + 2*pad - kernel) / stride + 1
    static const unsigned out_w = 1;          // (in_w + 2*pad - kernel) / stride + 1
    static const unsigned out_c = 1;          // filters
    static const unsigned kernel = 1;         // square kernel side
    static const unsigned stride = 1;         // step between windows, both axes
    static const unsigned pad = 0;            // zero rows/columns on each side
    static const unsigned w_bits = 8;         // weight width (blob and memory)
    static const bool mul_fabric = false;   // multipliers on LUTs (BIND_OP impl=fabric)
    static const unsigned out_bits = 8;       // output width after requantization
    static const bool relu = true;            // unsigned (ReLU-quant) or signed output
    static const bool requant = true;         // always: a conv's outputs are codes (wq_mvau.h mvau_out)
    static const unsigned n_out = 1;          // out_c: biases and weight rows
    static const unsigned fan_in = 1;         // kernel * kernel * in_c, order [ky][kx][ic]
    static const unsigned pe = 1;             // output channels at once; divides out_c
    static const unsigned simd = 1;           // fan-in elements each PE multiplies at once
    static const unsigned nf = 1;             // out_c / pe: output-channel groups
    static const unsigned sf = 1;             // fan_in / simd: slices a PE walks through
    static const unsigned fold = 1;           // nf * sf: cycles an output pixel
    static const unsigned n_weights = 1;      // out_c * fan_in
    static const unsigned wwords = 1;         // nf * sf: memory words each PE holds
    static const unsigned word_bits = 8;      // simd * w_bits: one memory word
    static const unsigned weight_mem_bits = 8;  // pe * wwords * word_bits == n_weights * w_bits
    static const unsigned n_shifts = 1;       // shift words at the head of the blob section (0: thresholds)
    static const unsigned n_thr = 0;          // thresholds a channel (2**out_bits - 1), 0: shift requant
    static const unsigned thr_rows = 1;       // pe * n_thr (1 without thresholds): one bank each
    static const unsigned thr_depth = 1;      // nf (1 without thresholds): words a bank
    static const unsigned line_banks = 1;     // cyclic factor F of each line buffer (hls/parallel.py)
    static const unsigned line_rows = 1;      // line buffers: kernel + stride (hls/parallel.py)
    static const unsigned fill_lanes = 1;     // codes lb_fill copies a cycle; divides in_w * in_c, <= F
    static const unsigned blob_offset = 0;    // first word of this layer's blob section
    static const unsigned section_words = 1;  // contract.blob.section_words
    typedef ap_uint<8> in_t;                  // input code (unsigned or signed)
    typedef ap_uint<8> out_t;                 // output code
    typedef ap_int<8> weight_t;               // one weight; ap_int<2> for bipolar 1-bit ones
    typedef ap_uint<8> wword_t;               // one memory word: simd weights
    typedef ap_int<40> accum_t;               // holds every partial sum plus the bias
};

// The window word of a dense conv: SIMD consecutive codes of the window in
// fan-in order [ky][kx][ic], the same for every PE. One word's codes in one
// window row are consecutive, at most min(SIMD, KC, ROW), so they fall in
// distinct banks modulo line_banks = that (hls/parallel.py). When simd divides
// in_c (PACKED) a word is one tap's channels [ic0, ic0 + SIMD), ic0 a multiple
// of SIMD: lane s reads bank s at word address w (index w * SIMD + s), a fixed
// bank a lane, so a lane only selects among the kernel rows
// (hls/cost.py line_buffers).
template <class CONFIG_T>
struct conv_window {
    typedef typename CONFIG_T::in_t in_t;
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned SIMD = CONFIG_T::simd;
    static const unsigned K = CONFIG_T::kernel;       // window rows
    static const unsigned NB = CONFIG_T::line_rows;   // line buffers
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned ROW = CONFIG_T::in_w * C;   // codes a line buffer
    static const unsigned SIDE_MAX = CONFIG_T::stride * (ROW / CONFIG_T::fill_lanes);  // fill steps a row
    static const unsigned KC = K * C;                 // codes of one window row
    static const unsigned WRAPS = (SIMD - 1) / KC + 1;  // window rows one word can end
    static const bool PACKED = C % SIMD == 0;          // one tap a word, lane s in bank s
    static const unsigned SW = PACKED ? SIMD : 1;      // codes a word address step
    unsigned top;      // line buffer of the window's first row
    int iy0;           // input row of the window's first row (negative: padding)
    unsigned x0, xw;   // padded code position of the window's first column; xw = x0 / SW
    unsigned ky0, r0, w0;   // window row and code in it of lane 0; w0 = r0 / SW
    lb_writer<CONFIG_T, in_t, ROW> fill;   // where the input's next codes go

    void start_row(unsigned oy) {
        #pragma HLS INLINE
        top = lb_top<CONFIG_T>(oy);
        iy0 = int(oy * CONFIG_T::stride) - int(CONFIG_T::pad);
        x0 = xw = ky0 = r0 = w0 = 0;
    }

    void side(const in_t in[CONFIG_T::in_h * ROW], in_t lines[NB][ROW]) {
        #pragma HLS INLINE
        fill.step(in, lines);
    }

    void fetch(const in_t lines[NB][ROW], unsigned, in_t x[PE][SIMD]) const {
        #pragma HLS INLINE
    ConvLanes:
        for (unsigned s = 0; s < SIMD; s++) {
            #pragma HLS UNROLL
            unsigned ky = ky0, r = r0 + s;
        ConvWrap:
            for (unsigned t = 0; t < WRAPS; t++) {
                #pragma HLS UNROLL
                if (r >= KC) {
                    r -= KC;
                    ky++;
                }
            }
            const int iy = iy0 + int(ky);
            const unsigned pos = x0 + r;
            const bool inside = iy >= 0 && iy < int(CONFIG_T::in_h) &&
                                pos >= CONFIG_T::pad * C && pos < CONFIG_T::pad * C + ROW;
            const unsigned row = top + ky < NB ? top + ky : top + ky - NB;
            const unsigned at = PACKED ? (xw + w0 - CONFIG_T::pad * (C / SW)) * SW + s : pos - CONFIG_T::pad * C;
            const in_t v = inside ? WQ_AT(lines[row], at) : in_t(0);
        ConvBroadcast:
            for (unsigned p = 0; p < PE; p++) {
                #pragma HLS UNROLL
                WQ_AT(x[p], s) = v;
            }
        }
    }

    void next(bool last, bool pix_end) {
        #pragma HLS INLINE
        if (last) {   // the next group starts at the window's first code
            ky0 = r0 = w0 = 0;
            if (pix_end) {
                x0 += CONFIG_T::stride * C;
                xw += CONFIG_T::stride * (C / SW);
            }
            return;
        }
        r0 += SIMD;
        w0++;
    ConvNext:
        for (unsigned t = 0; t < WRAPS; t++) {
            #pragma HLS UNROLL
            if (r0 >= KC) {
                r0 -= KC;
                w0 -= KC / SW;
                ky0++;
            }
        }
    }
};

// in:  [in_h][in_w][in_c] HWC; out: [out_h][out_w][out_c] HWC;
// w:   packed weight memory (wq_loader.h), b: [out_c], shift: the requant shift,
// thr: thresholds (wq_loader.h layout; wq::NO_THRESHOLDS when n_thr is 0).
template <class CONFIG_T>
void conv2d(const typename CONFIG_T::in_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
            typename CONFIG_T::out_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
            const typename CONFIG_T::wword_t w[CONFIG_T::pe][CONFIG_T::wwords],
            const bias_t b[CONFIG_T::out_c], const shift_t shift,
            const thr_t thr[CONFIG_T::thr_rows][CONFIG_T::thr_depth]) {
    #pragma HLS ARRAY_PARTITION variable=w complete dim=1
    static const unsigned PE = CONFIG_T::pe;   // b: one bank a PE (hls/gen_top.py registers it so)
    #pragma HLS ARRAY_PARTITION variable=b cyclic factor=PE dim=1
    #pragma HLS ARRAY_PARTITION variable=thr complete dim=1
    static const unsigned NB = CONFIG_T::line_rows;   // line buffers
    static const unsigned ROW = CONFIG_T::in_w * CONFIG_T::in_c;   // codes a line buffer
    static const unsigned F = CONFIG_T::line_banks;
    static const unsigned FL = CONFIG_T::fill_lanes;   // codes a fill step
    typename CONFIG_T::in_t lines[NB][ROW];
    #pragma HLS ARRAY_PARTITION variable=lines complete dim=1
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=F dim=2
    WQ_MEM(lines, WQ_ROWS_CYCLIC, F);
    conv_window<CONFIG_T> win;
    win.fill.start();
    lb_fill<CONFIG_T, typename CONFIG_T::in_t, ROW>(in, lines, win.fill, lb_need<CONFIG_T>(0));
    unsigned obase = 0;
ConvRows:
    for (unsigned oy = 0; oy < CONFIG_T::out_h; oy++) {
        WQ_SEQ(ConvRows);
        win.start_row(oy);
        mvau<CONFIG_T, CONFIG_T::out_w, CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c>(
            win, lines, in, lb_ahead<CONFIG_T>(oy) * (ROW / FL), out, obase, w, b, shift, thr);
    }
}

}  // namespace wq

#endif  // WQ_CONV2D_H
