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

template <class CONFIG_T>
void dwconv2d(const typename CONFIG_T::in_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
              typename CONFIG_T::out_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
              const typename CONFIG_T::wword_t w[CONFIG_T::pe][CONFIG_T::wwords],
              const bias_t b[CONFIG_T::out_c], const shift_t shift) {
    #pragma HLS ARRAY_PARTITION variable=w complete dim=1
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned SIMD = CONFIG_T::simd;
    static const unsigned SF = CONFIG_T::sf;
    static const unsigned C = CONFIG_T::in_c;
    typename CONFIG_T::accum_t acc[PE];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    WQ_MEM(acc, WQ_REGS, 0);
DwRows:
    for (unsigned oy = 0; oy < CONFIG_T::out_h; oy++) {
        WQ_SEQ(DwRows);
    DwCols:
        for (unsigned ox = 0; ox < CONFIG_T::out_w; ox++) {
            WQ_SEQ(DwCols);
        DwNf:
            for (unsigned nf = 0; nf < CONFIG_T::nf; nf++) {
                WQ_SEQ(DwNf);
            DwBias:
                for (unsigned p = 0; p < PE; p++) {
                    #pragma HLS UNROLL
                    WQ_AT(acc, p) = WQ_AT(b, nf * PE + p);
                }
            DwSf:
                for (unsigned sf = 0; sf < SF; sf++) {
                    #pragma HLS PIPELINE II = 1
                    WQ_PIPE(DwSf, 1, WQ_DEPTH_MAC(SIMD));
                DwPe:
                    for (unsigned p = 0; p < PE; p++) {
                        #pragma HLS UNROLL
                        const typename CONFIG_T::wword_t word = WQ_AT(w[p], nf * SF + sf);
                        const unsigned c = nf * PE + p;
                    DwSimd:
                        for (unsigned s = 0; s < SIMD; s++) {
                            #pragma HLS UNROLL
                            // One channel per tap: element k of the window is tap k of
                            // the full-channel window's channel c.
                            const unsigned tap = sf * SIMD + s;
                            const typename CONFIG_T::in_t x =
                                window_at<CONFIG_T>(in, oy, ox, tap * C + c, C);
                            WQ_AT(acc, p) += lane_mul<CONFIG_T::mul_fabric>::template mul<typename CONFIG_T::accum_t>(
                                x, weight_at<typename CONFIG_T::weight_t, CONFIG_T::w_bits>(word, s));
                        }
                    }
                }
            DwOut:
                for (unsigned p = 0; p < PE; p++) {
                    #pragma HLS UNROLL
                    WQ_AT(out, (oy * CONFIG_T::out_w + ox) * C + nf * PE + p) =
                        requant_out<CONFIG_T>(wide_t(WQ_AT(acc, p)), shift);
                }
            }
        }
    }
}

}  // namespace wq

#endif  // WQ_DWCONV_H
