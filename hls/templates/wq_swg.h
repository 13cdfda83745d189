// wq_swg.h: sliding-window generator with line buffers, for conv and pool
// layers (finn-hlslib's ConvolutionInputGenerator and hls4ml's line buffers
// solve the same problem; this is our own, simpler form).
//
// Two forms. sliding_window, below, is the stream form (not used by the
// generated core yet: it waits for the streaming rewrite of issue 16). The
// array form, lb_writer / lb_fill and their helpers first, is what conv2d and
// dwconv2d use today. sliding_window reads its input once, in HWC order, as a stream, and keeps only `kernel`
// padded rows of it on chip: one line buffer a window row, each its own bank
// (ARRAY_PARTITION dim=1), so no loop iteration touches a bank twice and both
// loops hold II=1 (the cycle-accounting C-sim checks this, hls/cycles.py).
// For each output pixel, row-major, it writes the window's kernel*kernel*in_c
// codes in conv2d's fan-in order [ky][kx][ic], zero in the padding, `simd`
// codes a word (code s in bits [s*data_bits, (s+1)*data_bits)), which is what a
// matrix-vector unit with SIMD lanes takes a cycle; simd divides in_c, so one
// word never spans two taps, and the line buffers are also split cyclically by
// simd (dim=2) so that a word is one read of each of simd banks. A partial
// window at the bottom/right edge is dropped (floor), as contract.graph says.
//
// This first form fills a row, then emits the windows that row completes; a
// later one overlaps the two (the fill of row r+1 with the emission of row r).
#ifndef WQ_SWG_H
#define WQ_SWG_H

#include "wq_common.h"

namespace wq {

struct swg_config {
    static const unsigned in_h = 3;    // input rows
    static const unsigned in_w = 3;    // input columns
    static const unsigned in_c = 1;    // channels
    static const unsigned kernel = 3;  // window side
    static const unsigned stride = 1;  // step between windows, both axes
    static const unsigned pad = 0;     // zero rows/columns on each side
    static const unsigned out_h = 1;   // (in_h + 2*pad - kernel) / stride + 1
    static const unsigned out_w = 1;   // (in_w + 2*pad - kernel) / stride + 1
    static const unsigned simd = 1;    // codes a word out; divides in_c
    static const unsigned data_bits = 8;  // bits of one code
    typedef ap_uint<8> data_t;         // one code
    typedef ap_uint<8> word_t;         // simd codes: ap_uint<simd * data_bits>
};

// Line buffers (issue 16): a conv layer reads its input array once, in order,
// and keeps NB = kernel + stride input rows on chip (CONFIG_T::line_rows): the
// kernel rows the current output row's windows read, and the stride rows the
// next output row needs, which load while the current row computes (the fill
// is a side job of the matrix-vector loop, wq_mvau.h; only the rows of the
// first output row load before it, lb_fill). One row a bank (complete dim=1),
// each split cyclically by F (dim=2) so that the codes one MAC iteration takes
// from a row fall in distinct banks and the loop holds II=1; the row being
// filled is never one the windows read, so its writes take other banks. Row
// iy lives in line buffer iy % NB. Padding is never stored: a lane outside
// the input reads 0.
//
// lb_writer copies the input in order, FL codes a cycle (hls/parallel.py
// fill_lanes): FL divides ROW and is at most F, so a run starts at a multiple
// of FL, stays in one row and hits FL distinct banks of the line buffer and of
// the input array (partitioned by >= FL, hls/gen_config.py in_lanes).
template <class CONFIG_T, class T, unsigned ROW>
struct lb_writer {
    static const unsigned FL = CONFIG_T::fill_lanes;   // codes a step
    static const unsigned NB = CONFIG_T::line_rows;    // line buffers
    unsigned at;     // next input code
    unsigned pos;    // its place in its line buffer
    unsigned slot;   // its line buffer

    void start() {
        #pragma HLS INLINE
        at = pos = slot = 0;
    }

    void step(const T in[CONFIG_T::in_h * ROW], T lines[NB][ROW]) {
        #pragma HLS INLINE
    LbLanes:
        for (unsigned l = 0; l < FL; l++) {
            #pragma HLS UNROLL
            WQ_AT(lines[slot], pos + l) = WQ_AT(in, at + l);
        }
        at += FL;
        pos += FL;
        if (pos == ROW) {
            pos = 0;
            slot = slot + 1 == NB ? 0 : slot + 1;
        }
    }
};

// Loads the first `need` input rows, before the first output row.
template <class CONFIG_T, class T, unsigned ROW>
void lb_fill(const T in[CONFIG_T::in_h * ROW], T lines[CONFIG_T::line_rows][ROW],
             lb_writer<CONFIG_T, T, ROW>& wr, unsigned need) {
    #pragma HLS INLINE
    const unsigned n = need * (ROW / CONFIG_T::fill_lanes);
LbFill:
    for (unsigned i = 0; i < n; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(LbFill, 1, WQ_DEPTH);
        #pragma HLS LOOP_TRIPCOUNT max = CONFIG_T::kernel * (ROW / CONFIG_T::fill_lanes)
        wr.step(in, lines);
    }
}

// Input rows the windows of output row oy need loaded: up to its last row.
template <class CONFIG_T>
unsigned lb_need(unsigned oy) {
    #pragma HLS INLINE
    const unsigned last = oy * CONFIG_T::stride + CONFIG_T::kernel - CONFIG_T::pad;   // one past
    return last < CONFIG_T::in_h ? last : CONFIG_T::in_h;
}

// Input rows to load while output row oy computes: those output row oy + 1
// needs beyond output row oy's (none after the last row).
template <class CONFIG_T>
unsigned lb_ahead(unsigned oy) {
    #pragma HLS INLINE
    return oy + 1 < CONFIG_T::out_h ? lb_need<CONFIG_T>(oy + 1) - lb_need<CONFIG_T>(oy) : 0;
}

// Line buffer of the window's first row, oy * stride - pad, (mod line_rows).
template <class CONFIG_T>
unsigned lb_top(unsigned oy) {
    #pragma HLS INLINE
    return (oy * CONFIG_T::stride + CONFIG_T::line_rows * CONFIG_T::pad - CONFIG_T::pad) % CONFIG_T::line_rows;
}

template <class CONFIG_T>
void sliding_window(hls::stream<typename CONFIG_T::data_t>& in, hls::stream<typename CONFIG_T::word_t>& out) {
    static const unsigned K = CONFIG_T::kernel;
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned P = CONFIG_T::pad;
    static const unsigned S = CONFIG_T::stride;
    static const unsigned SIMD = CONFIG_T::simd;
    static const unsigned B = CONFIG_T::data_bits;
    static const unsigned WP = CONFIG_T::in_w + 2 * P;   // padded row, pixels
    static const unsigned HP = CONFIG_T::in_h + 2 * P;   // padded rows
    typename CONFIG_T::data_t lines[K][WP * C];
    #pragma HLS ARRAY_PARTITION variable=lines complete dim=1
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=SIMD dim=2
    WQ_MEM(lines, WQ_ROWS_CYCLIC, SIMD);
    unsigned slot = 0;   // line buffer of padded row r: r % K
SwgRows:
    for (unsigned r = 0; r < HP; r++) {
        WQ_SEQ(SwgRows);
        const bool row_in = r >= P && r < P + CONFIG_T::in_h;
        unsigned x = 0, c = 0;   // padded column and channel of element i
    SwgFill:
        for (unsigned i = 0; i < WP * C; i++) {
            #pragma HLS PIPELINE II = 1
            WQ_PIPE(SwgFill, 1, WQ_DEPTH);
            const bool inside = row_in && x >= P && x < P + CONFIG_T::in_w;
            WQ_AT(lines[slot], i) = inside ? in.read() : typename CONFIG_T::data_t(0);
            if (++c == C) {
                c = 0;
                x++;
            }
        }
        // Row r completes the windows whose first padded row is r + 1 - K.
        if (r + 1 >= K && (r + 1 - K) % S == 0 && (r + 1 - K) / S < CONFIG_T::out_h) {
            const unsigned first = (slot + 1) % K;   // slot of padded row r + 1 - K
            unsigned ox = 0, ky = 0, kx = 0, ic = 0;
        SwgEmit:
            for (unsigned j = 0; j < CONFIG_T::out_w * K * K * (C / SIMD); j++) {
                #pragma HLS PIPELINE II = 1
                WQ_PIPE(SwgEmit, 1, WQ_DEPTH);
                const unsigned row = first + ky < K ? first + ky : first + ky - K;
                typename CONFIG_T::word_t word = 0;
            SwgLanes:
                for (unsigned s = 0; s < SIMD; s++) {
                    #pragma HLS UNROLL
                    const typename CONFIG_T::data_t v = WQ_AT(lines[row], (ox * S + kx) * C + ic + s);
                    word.range(s * B + B - 1, s * B) = v.range(B - 1, 0);
                }
                out.write(word);
                ic += SIMD;
                if (ic == C) {
                    ic = 0;
                    if (++kx == K) {
                        kx = 0;
                        if (++ky == K) {
                            ky = 0;
                            ox++;
                        }
                    }
                }
            }
        }
        slot = slot + 1 == K ? 0 : slot + 1;
    }
}

}  // namespace wq

#endif  // WQ_SWG_H
