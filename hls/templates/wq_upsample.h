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

// in: [in_h][in_w][in_c] HWC, out: [out_h][out_w][in_c] HWC. One flattened
// II=1 loop over the output in order, PE consecutive codes an iteration, each
// read from the input pixel (oy / factor, ox / factor).
template <class CONFIG_T>
void upsample(const typename CONFIG_T::data_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
              typename CONFIG_T::data_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::in_c]) {
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned F = CONFIG_T::factor;
    static const unsigned ITERS = CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::nf;  // PE output codes each
    // output position (oy, ox, f); iy = oy / F, ix = ox / F, and yr, xr the remainders
    unsigned iy = 0, yr = 0, ix = 0, xr = 0, ox = 0, f = 0;
UpStream:
    for (unsigned it = 0; it < ITERS; it++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(UpStream, 1, WQ_DEPTH);
        const unsigned src = (iy * CONFIG_T::in_w + ix) * C + f * PE;
    UpPe:
        for (unsigned p = 0; p < PE; p++) {
            #pragma HLS UNROLL
            WQ_AT(out, it * PE + p) = WQ_AT(in, src + p);
        }
        if (++f == CONFIG_T::nf) {
            f = 0;
            if (++xr == F) { xr = 0; ix++; }
            if (++ox == CONFIG_T::out_w) {
                ox = 0; ix = 0; xr = 0;
                if (++yr == F) { yr = 0; iy++; }
            }
        }
    }
}

}  // namespace wq

#endif  // WQ_UPSAMPLE_H
