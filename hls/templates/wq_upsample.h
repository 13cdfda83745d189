// wq_upsample.h: nearest-neighbour upsampling by 2 (each pixel becomes a
// 2x2 block), codes unchanged.
#ifndef WQ_UPSAMPLE_H
#define WQ_UPSAMPLE_H

#include "wq_common.h"

namespace wq {

struct upsample_config {
    static const unsigned in_h = 1;    // input rows
    static const unsigned in_w = 1;    // input columns
    static const unsigned in_c = 1;    // channels, unchanged
    static const unsigned factor = 2;  // only 2 (contract.graph)
    static const unsigned out_h = 2;   // in_h * factor
    static const unsigned out_w = 2;   // in_w * factor
    static const unsigned pe = 1;      // channels copied at once; divides in_c
    static const unsigned nf = 1;      // in_c / pe: channel groups a pixel
    typedef ap_uint<8> data_t;         // code type in and out
};

// in: [in_h][in_w][in_c] HWC, out: [out_h][out_w][in_c] HWC.
template <class CONFIG_T>
void upsample(const typename CONFIG_T::data_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
              typename CONFIG_T::data_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::in_c]) {
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned F = CONFIG_T::factor;
UpRows:
    for (unsigned oy = 0; oy < CONFIG_T::out_h; oy++) {
        WQ_SEQ(UpRows);
    UpCols:
        for (unsigned ox = 0; ox < CONFIG_T::out_w; ox++) {
            WQ_SEQ(UpCols);
        UpNf:
            for (unsigned f = 0; f < CONFIG_T::nf; f++) {
                #pragma HLS PIPELINE II = 1
                WQ_PIPE(UpNf, 1, WQ_DEPTH);
            UpPe:
                for (unsigned p = 0; p < PE; p++) {
                    #pragma HLS UNROLL
                    const unsigned c = f * PE + p;
                    WQ_AT(out, (oy * CONFIG_T::out_w + ox) * C + c) = WQ_AT(in, ((oy / F) * CONFIG_T::in_w + ox / F) * C + c);
                }
            }
        }
    }
}

}  // namespace wq

#endif  // WQ_UPSAMPLE_H
