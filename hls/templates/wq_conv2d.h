// wq_conv2d.h: 2-D convolution (stride 1, zero padding) with ReLU-quant.
#ifndef WQ_CONV2D_H
#define WQ_CONV2D_H

#include "wq_common.h"

namespace wq {

// Base of every generated conv config; the generator overrides each member.
struct conv2d_config {
    static const unsigned in_h = 1;          // input rows
    static const unsigned in_w = 1;          // input columns
    static const unsigned in_c = 1;          // input channels
    static const unsigned out_c = 1;         // filters
    static const unsigned kernel = 3;        // square kernel side
    static const unsigned pad = 1;           // zero rows/columns on each side
    static const unsigned w_bits = 8;        // weight width in the blob
    static const unsigned out_bits = 8;      // activation width after ReLU-quant
    static const unsigned n_weights = 9;     // out_c * kernel * kernel * in_c
    static const unsigned blob_offset = 0;   // first word of this layer's blob section
    static const unsigned section_words = 1; // 1 shift + out_c biases + packed weights
    static const unsigned reuse_factor = 1;  // initiation interval of the MAC loop
    typedef ap_uint<8> in_t;
    typedef ap_uint<8> out_t;
    typedef ap_int<8> weight_t;
    typedef ap_int<40> accum_t;              // wide enough for every partial sum + bias
};

// in:  [in_h][in_w][in_c] (HWC), out: [in_h][in_w][out_c] (HWC, same size as
// the input since stride is 1 and pad = kernel / 2),
// w:   [out_c][kernel][kernel][in_c], the blob's order.
template <class CONFIG_T>
void conv2d_relu(const typename CONFIG_T::in_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
                 typename CONFIG_T::out_t out[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::out_c],
                 const typename CONFIG_T::weight_t w[CONFIG_T::n_weights],
                 const bias_t b[CONFIG_T::out_c], const shift_t shift) {
    static const int H = CONFIG_T::in_h;
    static const int W = CONFIG_T::in_w;
    static const int K = CONFIG_T::kernel;
    static const int P = CONFIG_T::pad;
    static const unsigned IC = CONFIG_T::in_c;
    static const unsigned OC = CONFIG_T::out_c;
ConvRows:
    for (int oy = 0; oy < H; oy++) {
    ConvCols:
        for (int ox = 0; ox < W; ox++) {
        ConvFilters:
            for (unsigned oc = 0; oc < OC; oc++) {
                typename CONFIG_T::accum_t acc = b[oc];
            ConvKy:
                for (int ky = 0; ky < K; ky++) {
                ConvKx:
                    for (int kx = 0; kx < K; kx++) {
                        const int iy = oy + ky - P;
                        const int ix = ox + kx - P;
                        // Padding contributes zeros, so skipping it is exact.
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        const unsigned in_base = (iy * W + ix) * IC;
                        const unsigned w_base = ((oc * K + ky) * K + kx) * IC;
                    ConvChannels:
                        for (unsigned ic = 0; ic < IC; ic++) {
                            #pragma HLS PIPELINE II = CONFIG_T::reuse_factor
                            acc += in[in_base + ic] * w[w_base + ic];
                        }
                    }
                }
                out[(oy * W + ox) * OC + oc] = requant_relu<CONFIG_T::out_bits>(acc, shift);
            }
        }
    }
}

}  // namespace wq

#endif  // WQ_CONV2D_H
