// wq_swg.h: the line buffers of the conv and depthwise layers (finn-hlslib's ConvolutionInputGenerator and hls4ml's line buffers
// solve the same problem; this is our own, simpler form).
//
// The layer reads its input array once, in order, into line buffers (the
// DATAFLOW region's channel is then a FIFO, hls/gen_top.py), and a window is
// one read of distinct banks, so the MAC loop holds II=1. (An earlier stream
// form, sliding_window, was dropped: the region connects layers by array
// channels that Vitis maps to FIFOs or ping-pong buffers.)
#ifndef WQ_SWG_H
#define WQ_SWG_H

#include "wq_common.h"

namespace wq {

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

}  // namespace wq

#endif  // WQ_SWG_H
