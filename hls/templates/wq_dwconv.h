// wq_dwconv.h: depthwise 2-D convolution (groups == in_c == out_c): output
// channel c sees only input channel c. Any square kernel, stride, padding;
// bias, then requantization.
#ifndef WQ_DWCONV_H
#define WQ_DWCONV_H

#include "wq_conv2d.h"

namespace wq {

// Same members as conv2d_config (the generator fills the same set), with
//   out_c == in_c, fan_in = kernel * kernel (order [ky][kx]),
//   pe: channels at once, simd: kernel taps each PE multiplies at once,
//   w: weights [c][ky][kx] packed as in wq_loader.h.
struct dwconv_config : conv2d_config {};

// The lanes of a depthwise conv: PE channels c = nf * PE + p, each with SIMD
// kernel taps in order [ky][kx]. One word's taps in one window row are at most
// L consecutive columns, so its codes there, columns j < L of channels c0 + p
// (p < PE, PE | C), are distinct modulo C * L; with one column, modulo PE
// (line_banks, hls/parallel.py).
template <class CONFIG_T>
struct dw_window {
    typedef typename CONFIG_T::in_t in_t;
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned SIMD = CONFIG_T::simd;
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned K = CONFIG_T::kernel;        // window rows
    static const unsigned NB = CONFIG_T::line_rows;    // line buffers
    static const unsigned ROW = CONFIG_T::in_w * C;    // codes a line buffer
    static const unsigned SIDE_MAX = CONFIG_T::stride * (ROW / CONFIG_T::fill_lanes);  // fill steps a row
    static const unsigned WRAPS = (SIMD - 1) / K + 1;  // window rows one word can end
    static const unsigned L0 = SIMD < K ? SIMD : K;                       // (a constant: no call)
    static const unsigned L = L0 < CONFIG_T::in_w ? L0 : CONFIG_T::in_w;  // columns of one word
    unsigned top;        // line buffer of the window's first row
    int iy0;             // input row of the window's first row (negative: padding)
    unsigned x0;         // padded column of the window's first
    unsigned ky0, kx0;   // tap of lane 0
    lb_writer<CONFIG_T, in_t, ROW> fill;   // where the input's next codes go

    void start_row(unsigned oy) {
        #pragma HLS INLINE
        top = lb_top<CONFIG_T>(oy);
        iy0 = int(oy * CONFIG_T::stride) - int(CONFIG_T::pad);
        x0 = ky0 = kx0 = 0;
    }

    void side(const in_t in[CONFIG_T::in_h * ROW], in_t lines[NB][ROW]) {
        #pragma HLS INLINE
        fill.step(in, lines);
    }

    void fetch(const in_t lines[NB][ROW], unsigned nf, in_t x[PE][SIMD]) const {
        #pragma HLS INLINE
    DwPe:
        for (unsigned p = 0; p < PE; p++) {
            #pragma HLS UNROLL
            const unsigned c = nf * PE + p;
        DwSimd:
            for (unsigned s = 0; s < SIMD; s++) {
                #pragma HLS UNROLL
                unsigned ky = ky0, kx = kx0 + s;
            DwWrap:
                for (unsigned t = 0; t < WRAPS; t++) {
                    #pragma HLS UNROLL
                    if (kx >= K) {
                        kx -= K;
                        ky++;
                    }
                }
                const int iy = iy0 + int(ky);
                const unsigned px = x0 + kx;
                const bool inside = iy >= 0 && iy < int(CONFIG_T::in_h) &&
                                    px >= CONFIG_T::pad && px < CONFIG_T::pad + CONFIG_T::in_w;
                const unsigned row = top + ky < NB ? top + ky : top + ky - NB;
                // With one column a word, lane p reads bank p: the index in the
                // w * PE + p form makes that fixed bank visible to HLS.
                const unsigned at = L == 1 ? ((px - CONFIG_T::pad) * (C / PE) + nf) * PE + p
                                           : (px - CONFIG_T::pad) * C + c;
                WQ_AT(x[p], s) = inside ? WQ_AT(lines[row], at) : in_t(0);
            }
        }
    }

    void next(bool last, bool pix_end) {
        #pragma HLS INLINE
        if (last) {   // the next group starts at tap (0, 0)
            ky0 = kx0 = 0;
            if (pix_end) x0 += CONFIG_T::stride;
            return;
        }
        kx0 += SIMD;
    DwNext:
        for (unsigned t = 0; t < WRAPS; t++) {
            #pragma HLS UNROLL
            if (kx0 >= K) {
                kx0 -= K;
                ky0++;
            }
        }
    }
};

// The window comes from line buffers (wq_swg.h lb_fill): the input array is
// read once, in order, and each iteration of the shared matrix-vector loop
// (wq_mvau.h) takes its pe * simd codes from distinct banks, so it holds II=1.
template <class CONFIG_T>
void dwconv2d(const typename CONFIG_T::in_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
              typename CONFIG_T::out_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
              const typename CONFIG_T::wword_t w[CONFIG_T::pe][CONFIG_T::wwords],
              const bias_t b[CONFIG_T::out_c], const shift_t shift) {
    #pragma HLS ARRAY_PARTITION variable=w complete dim=1
    static const unsigned PE = CONFIG_T::pe;   // b: one bank a PE (hls/gen_top.py registers it so)
    #pragma HLS ARRAY_PARTITION variable=b cyclic factor=PE dim=1
    static const unsigned NB = CONFIG_T::line_rows;   // line buffers
    static const unsigned ROW = CONFIG_T::in_w * CONFIG_T::in_c;   // codes a line buffer
    static const unsigned F = CONFIG_T::line_banks;
    static const unsigned FL = CONFIG_T::fill_lanes;   // codes a fill step
    typename CONFIG_T::in_t lines[NB][ROW];
    #pragma HLS ARRAY_PARTITION variable=lines complete dim=1
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=F dim=2
    WQ_MEM(lines, WQ_ROWS_CYCLIC, F);
    dw_window<CONFIG_T> win;
    win.fill.start();
    lb_fill<CONFIG_T, typename CONFIG_T::in_t, ROW>(in, lines, win.fill, lb_need<CONFIG_T>(0));
    unsigned obase = 0;
DwRows:
    for (unsigned oy = 0; oy < CONFIG_T::out_h; oy++) {
        WQ_SEQ(DwRows);
        win.start_row(oy);
        // A depthwise layer requantizes by shift only (hls/gen_config.py refuses thresholds).
        mvau<CONFIG_T, CONFIG_T::out_w, CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c>(
            win, lines, in, lb_ahead<CONFIG_T>(oy) * (ROW / FL), out, obase, w, b, shift, NO_THRESHOLDS);
    }
}

}  // namespace wq

#endif  // WQ_DWCONV_H
