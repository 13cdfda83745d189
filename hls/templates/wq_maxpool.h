// wq_maxpool.h: max pooling, any window and stride, no padding; a partial
// window at the bottom/right edge is dropped (floor), as contract.graph says.
//
// Streaming: one flattened II=1 loop walks the input rows and columns that
// some window covers, in order, PE consecutive codes (channels of one pixel)
// an iteration. The max is taken separably: along a row into hacc (one row of
// it per horizontal window still open), and when a window's row segment ends,
// down the column into vbuf (one row of partial maxima per output row still
// open, out_w * in_c codes). The output pixel group is written when its
// window's last element arrives. Rows of hacc/vbuf are distinct banks and each
// is cyclic by PE, so every iteration touches each bank at one address; and an
// address is read again only nf (hacc) or about in_w * nf (vbuf) iterations
// after it is written.
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
    typedef typename CONFIG_T::data_t data_t;
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned Q = CONFIG_T::pool;
    static const unsigned S = CONFIG_T::stride;
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned NF = CONFIG_T::nf;    // channel groups a pixel
    static const unsigned OW = CONFIG_T::out_w; // output columns
    static const unsigned OH = CONFIG_T::out_h; // output rows
    static const unsigned K = (Q + S - 1) / S;  // windows open at once along a row / down a column
    // input rows and columns some window covers (the rest is the dropped edge)
    static const unsigned ROWS = (OH - 1) * S + Q;  // cycle_model.pool_span(layer, "h")
    static const unsigned COLS = (OW - 1) * S + Q;  // cycle_model.pool_span(layer, "w")
    static const unsigned ITERS = ROWS * COLS * NF; // one pixel group an iteration
    data_t hacc[K][C];
    #pragma HLS ARRAY_PARTITION variable=hacc complete dim=1
    #pragma HLS ARRAY_PARTITION variable=hacc cyclic factor=PE dim=2
    WQ_MEM(hacc, WQ_ROWS_CYCLIC, PE);
    data_t vbuf[K][OW * C];
    #pragma HLS ARRAY_PARTITION variable=vbuf complete dim=1
    #pragma HLS ARRAY_PARTITION variable=vbuf cyclic factor=PE dim=2
    WQ_MEM(vbuf, WQ_ROWS_CYCLIC, PE);
    data_t v[PE];
    #pragma HLS ARRAY_PARTITION variable=v complete
    WQ_MEM(v, WQ_REGS, 0);
    data_t h[PE];
    #pragma HLS ARRAY_PARTITION variable=h complete
    WQ_MEM(h, WQ_REGS, 0);
    // position: row iy = yq * S + yr, column ix = xq * S + xr, channel group f;
    // ys / xs: yq / xq mod K, the slot of the newest window open there.
    unsigned iy = 0, yq = 0, yr = 0, ys = 0;
    unsigned ix = 0, xq = 0, xr = 0, xs = 0;
    unsigned f = 0;
PoolStream:
    for (unsigned it = 0; it < ITERS; it++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(PoolStream, 1, WQ_DEPTH);
        const unsigned base = (iy * CONFIG_T::in_w + ix) * C + f * PE;
    PoolRead:
        for (unsigned p = 0; p < PE; p++) {
            #pragma HLS UNROLL
            WQ_AT(v, p) = WQ_AT(in, base + p);
        }
        // Along the row: window ox = xq - kh holds column ix when xr + kh * S < Q.
        bool hdone = false;
        unsigned hox = 0;
    PoolRow:
        for (unsigned kh = 0; kh < K; kh++) {
            #pragma HLS UNROLL
            const unsigned dx = xr + kh * S;
            if (xq >= kh && xq - kh < OW && dx < Q) {
                const unsigned slot = (xs + K - kh) % K;
            PoolRowPe:
                for (unsigned p = 0; p < PE; p++) {
                    #pragma HLS UNROLL
                    // The window's first element seeds the max: right for signed codes too.
                    data_t m = WQ_AT(v, p);
                    if (dx > 0) {
                        const data_t o = WQ_AT(hacc[slot], f * PE + p);
                        if (o > m) m = o;
                    }
                    if (dx == Q - 1) WQ_AT(h, p) = m;
                    else WQ_AT(hacc[slot], f * PE + p) = m;
                }
                if (dx == Q - 1) {
                    hdone = true;
                    hox = xq - kh;
                }
            }
        }
        // Down the column: a finished row segment of window (oy, hox), oy = yq - kv.
        if (hdone) {
        PoolCol:
            for (unsigned kv = 0; kv < K; kv++) {
                #pragma HLS UNROLL
                const unsigned dy = yr + kv * S;
                if (yq >= kv && yq - kv < OH && dy < Q) {
                    const unsigned slot = (ys + K - kv) % K;
                    const unsigned oy = yq - kv;
                PoolColPe:
                    for (unsigned p = 0; p < PE; p++) {
                        #pragma HLS UNROLL
                        data_t m = WQ_AT(h, p);
                        if (dy > 0) {
                            const data_t o = WQ_AT(vbuf[slot], hox * C + f * PE + p);
                            if (o > m) m = o;
                        }
                        if (dy == Q - 1) WQ_AT(out, (oy * OW + hox) * C + f * PE + p) = m;
                        else WQ_AT(vbuf[slot], hox * C + f * PE + p) = m;
                    }
                }
            }
        }
        // next position: channel group, then column, then row
        if (++f == NF) {
            f = 0;
            ix++;
            if (++xr == S) { xr = 0; xq++; if (++xs == K) xs = 0; }
            if (ix == COLS) {
                ix = 0; xq = 0; xr = 0; xs = 0;
                iy++;
                if (++yr == S) { yr = 0; yq++; if (++ys == K) ys = 0; }
            }
        }
    }
}

}  // namespace wq

#endif  // WQ_MAXPOOL_H
