// wq_maxpool.h: max pooling, any window and stride, no padding; a partial
// window at the bottom/right edge is dropped (floor), as contract.graph says.
#ifndef WQ_MAXPOOL_H
#define WQ_MAXPOOL_H

#include "wq_common.h"

namespace wq {

struct maxpool_config {
    static const unsigned in_h = 2;   // input rows
    static const unsigned in_w = 2;   // input columns
    static const unsigned in_c = 1;   // channels, unchanged by pooling
    static const unsigned pool = 2;   // window side
    static const unsigned stride = 2; // step between windows
    static const unsigned out_h = 1;  // (in_h - pool) / stride + 1
    static const unsigned out_w = 1;  // (in_w - pool) / stride + 1
    static const unsigned pe = 1;     // channels compared at once; divides in_c
    static const unsigned nf = 1;     // in_c / pe: channel groups a pixel
    typedef ap_uint<8> data_t;        // code type in and out (signed after a linear layer)
};

// in: [in_h][in_w][in_c] HWC, out: [out_h][out_w][in_c] HWC.
template <class CONFIG_T>
void maxpool2d(const typename CONFIG_T::data_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
               typename CONFIG_T::data_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::in_c]) {
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned Q = CONFIG_T::pool;
    static const unsigned S = CONFIG_T::stride;
    static const unsigned PE = CONFIG_T::pe;
PoolRows:
    for (unsigned oy = 0; oy < CONFIG_T::out_h; oy++) {
        WQ_SEQ(PoolRows);
    PoolCols:
        for (unsigned ox = 0; ox < CONFIG_T::out_w; ox++) {
            WQ_SEQ(PoolCols);
        PoolNf:
            for (unsigned f = 0; f < CONFIG_T::nf; f++) {
                #pragma HLS PIPELINE II = 1
                WQ_PIPE(PoolNf, 1, WQ_DEPTH);
            PoolPe:
                for (unsigned p = 0; p < PE; p++) {
                    #pragma HLS UNROLL
                    const unsigned c = f * PE + p;
                    // The window's first element seeds the max: right for signed codes too.
                    typename CONFIG_T::data_t m = WQ_AT(in, ((oy * S) * CONFIG_T::in_w + ox * S) * C + c);
                PoolWinY:
                    for (unsigned dy = 0; dy < Q; dy++) {
                    PoolWinX:
                        for (unsigned dx = 0; dx < Q; dx++) {
                            const typename CONFIG_T::data_t v =
                                WQ_AT(in, ((oy * S + dy) * CONFIG_T::in_w + ox * S + dx) * C + c);
                            if (v > m) m = v;
                        }
                    }
                    WQ_AT(out, (oy * CONFIG_T::out_w + ox) * C + c) = m;
                }
            }
        }
    }
}

}  // namespace wq

#endif  // WQ_MAXPOOL_H
