// wq_mvau.h: the matrix-vector-activate unit that conv2d, dwconv2d and dense
// share (issue 16; finn-hlslib's Matrix_Vector_Activate_Batch solves the same
// problem). The output groups (NF), the fan-in slices (SF) and the pixels of
// one call are ONE pipelined loop at II=1: a nested NF > SF form would pay the
// pipeline's fill and drain once per (pixel, output group), and SF is often 1
// or 2. Its counters step incrementally (no division or modulo in the loop).
// Each iteration takes one input word of SIMD codes for every PE from a window
// source (WIN, below), multiplies it with each PE's weight word, starts the PE
// sums from the biases on the first slice and writes the PE outputs,
// requantized, on the last one: out_lanes = pe consecutive codes a cycle.
#ifndef WQ_MVAU_H
#define WQ_MVAU_H

#include "wq_common.h"
#include "wq_loader.h"
#include "wq_requant.h"

namespace wq {

// One output code: requantized (shift or thresholds, wq_requant.h activate),
// or, for the logits layer (requant false), the full-width sum.
template <class CONFIG_T>
typename CONFIG_T::out_t mvau_out(typename CONFIG_T::accum_t a, shift_t shift,
                                  const thr_t thr[CONFIG_T::thr_rows][CONFIG_T::thr_depth], unsigned p,
                                  unsigned nf) {
    #pragma HLS INLINE
    if (CONFIG_T::requant) return activate<CONFIG_T>(wide_t(a), shift, thr, p, nf);
    return typename CONFIG_T::out_t(a);
}

// NPIX output pixels (a conv's output row; 1 for dense), NF * SF iterations
// each. WIN supplies the lanes: win.fetch(src, nf, x) fills x[pe][simd] with the
// codes the current (pixel, group, slice) multiplies, reading src only in runs
// the partitioning serves in one cycle; win.next(last, pix_end) steps it past
// a slice (last: the group's final one; pix_end: the pixel's final one).
// Side job: the first side_n iterations also call win.side(aux, src) (a conv
// loads the next output row's input rows into line buffers the windows do not
// read); the loop runs max(side_n, NPIX * NF * SF) iterations.
// out[obase + p], p < PE: the group's outputs; obase advances by PE a group.
template <class CONFIG_T, unsigned NPIX, unsigned N_OUT, class WIN, class SRC, class AUX>
void mvau(WIN& win, SRC& src, const AUX& aux, unsigned side_n, typename CONFIG_T::out_t out[N_OUT],
          unsigned& obase, const typename CONFIG_T::wword_t w[CONFIG_T::pe][CONFIG_T::wwords],
          const bias_t b[CONFIG_T::n_out], const shift_t shift,
          const thr_t thr[CONFIG_T::thr_rows][CONFIG_T::thr_depth]) {
    #pragma HLS INLINE
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned SIMD = CONFIG_T::simd;
    static const unsigned NF = CONFIG_T::nf;
    static const unsigned SF = CONFIG_T::sf;
    static const unsigned MAC_N = NPIX * NF * SF;   // iterations that multiply
    static const unsigned MAX_N = MAC_N > WIN::SIDE_MAX ? MAC_N : WIN::SIDE_MAX;
    typedef typename CONFIG_T::accum_t acc_t;
    acc_t acc[PE];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    WQ_MEM(acc, WQ_REGS, 0);
    typename CONFIG_T::in_t x[PE][SIMD];   // this iteration's lanes
    #pragma HLS ARRAY_PARTITION variable=x complete dim=0
    WQ_MEM(x, WQ_REGS, 0);
    unsigned nf = 0, sf = 0, wi = 0;   // output group, slice, weight word (nf * SF + sf)
    const unsigned n = side_n > MAC_N ? side_n : MAC_N;
Mvau:
    for (unsigned i = 0; i < n; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(Mvau, 1, WQ_DEPTH_MAC(SIMD));
        #pragma HLS LOOP_TRIPCOUNT min = MAC_N max = MAX_N
        // The side job writes line buffers this row's windows never read
        // (wq_swg.h), which the scheduler cannot prove from the run-time rows.
        #pragma HLS DEPENDENCE variable=src inter false
        #pragma HLS DEPENDENCE variable=src intra false
        if (i < side_n) win.side(aux, src);
        if (i >= MAC_N) continue;
        const bool first = sf == 0;
        const bool last = sf == SF - 1;
        const bool pix_end = last && nf == NF - 1;
        win.fetch(src, nf, x);
    MvauPe:
        for (unsigned p = 0; p < PE; p++) {
            #pragma HLS UNROLL
            const typename CONFIG_T::wword_t word = WQ_AT(w[p], wi);
            // b is partitioned cyclically by PE (hls/gen_top.py): one read a bank.
            acc_t a = first ? acc_t(WQ_AT(b, nf * PE + p)) : WQ_AT(acc, p);
        MvauSimd:
            for (unsigned s = 0; s < SIMD; s++) {
                #pragma HLS UNROLL
                a += lane_mul<CONFIG_T::mul_fabric>::template mul<acc_t>(
                    WQ_AT(x[p], s), weight_at<typename CONFIG_T::weight_t, CONFIG_T::w_bits>(word, s));
            }
            WQ_AT(acc, p) = a;
            if (last) WQ_AT(out, obase + p) = mvau_out<CONFIG_T>(a, shift, thr, p, nf);
        }
        win.next(last, pix_end);
        if (last) obase += PE;
        sf = last ? 0 : sf + 1;
        nf = pix_end ? 0 : (last ? nf + 1 : nf);
        wi = pix_end ? 0 : wi + 1;
    }
}

}  // namespace wq

#endif  // WQ_MVAU_H
