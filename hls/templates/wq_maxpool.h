// wq_maxpool.h: non-overlapping max pooling; odd edges are dropped (floor).
#ifndef WQ_MAXPOOL_H
#define WQ_MAXPOOL_H

#include "wq_common.h"

namespace wq {

struct maxpool_config {
    static const unsigned in_h = 2;   // input rows
    static const unsigned in_w = 2;   // input columns
    static const unsigned in_c = 1;   // channels, unchanged by pooling
    static const unsigned pool = 2;   // window side and stride
    static const unsigned out_h = 1;  // in_h / pool, rounded down
    static const unsigned out_w = 1;  // in_w / pool, rounded down
    typedef ap_uint<8> data_t;
};

// in: [in_h][in_w][in_c] HWC, out: [out_h][out_w][in_c] HWC.
template <class CONFIG_T>
void maxpool2d(const typename CONFIG_T::data_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
               typename CONFIG_T::data_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::in_c]) {
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned Q = CONFIG_T::pool;
PoolRows:
    for (unsigned oy = 0; oy < CONFIG_T::out_h; oy++) {
    PoolCols:
        for (unsigned ox = 0; ox < CONFIG_T::out_w; ox++) {
        PoolChannels:
            for (unsigned c = 0; c < C; c++) {
                #pragma HLS PIPELINE II = 1
                // Activations are unsigned, so 0 is a safe identity for max.
                typename CONFIG_T::data_t m = 0;
            PoolWinY:
                for (unsigned dy = 0; dy < Q; dy++) {
                PoolWinX:
                    for (unsigned dx = 0; dx < Q; dx++) {
                        const typename CONFIG_T::data_t v =
                            in[((oy * Q + dy) * CONFIG_T::in_w + ox * Q + dx) * C + c];
                        if (v > m) m = v;
                    }
                }
                out[(oy * CONFIG_T::out_w + ox) * C + c] = m;
            }
        }
    }
}

}  // namespace wq

#endif  // WQ_MAXPOOL_H
