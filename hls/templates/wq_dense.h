// wq_dense.h: fully connected layer (hidden, with requantization, or the
// logits layer, which returns its full-width sums) and argmax.
#ifndef WQ_DENSE_H
#define WQ_DENSE_H

#include "wq_common.h"
#include "wq_loader.h"
#include "wq_mvau.h"
#include "wq_requant.h"

namespace wq {

struct dense_config {
    static const unsigned n_in = 1;           // in_features, HWC flatten order of the input
    static const unsigned n_out = 1;          // out_features
    static const unsigned w_bits = 8;         // weight width (blob and memory)
    static const bool mul_fabric = false;   // multipliers on LUTs (BIND_OP impl=fabric)
    static const unsigned out_bits = 8;       // output width after requantization
    static const bool relu = true;            // unsigned (ReLU-quant) or signed output
    static const bool requant = true;         // false: the logits layer (out_t = accum_t)
    static const unsigned fan_in = 1;         // n_in
    static const unsigned pe = 1;             // outputs at once; divides n_out
    static const unsigned simd = 1;           // inputs each PE multiplies at once; divides n_in
    static const unsigned nf = 1;             // n_out / pe: output groups
    static const unsigned sf = 1;             // n_in / simd: slices a PE walks through
    static const unsigned fold = 1;           // nf * sf: cycles the layer takes
    static const unsigned n_weights = 1;      // n_out * n_in
    static const unsigned wwords = 1;         // nf * sf: memory words each PE holds
    static const unsigned word_bits = 8;      // simd * w_bits: one memory word
    static const unsigned weight_mem_bits = 8;  // pe * wwords * word_bits == n_weights * w_bits
    static const unsigned n_shifts = 1;       // shift words at the head of the blob section (0: thresholds)
    static const unsigned n_thr = 0;          // thresholds a channel (2**out_bits - 1), 0: shift requant
    static const unsigned thr_rows = 1;       // pe * n_thr (1 without thresholds): one bank each
    static const unsigned thr_depth = 1;      // nf (1 without thresholds): words a bank
    static const unsigned blob_offset = 0;    // first word of this layer's blob section
    static const unsigned section_words = 1;  // contract.blob.section_words
    typedef ap_uint<8> in_t;
    typedef ap_uint<8> out_t;
    typedef ap_int<8> weight_t;               // ap_int<2> for bipolar 1-bit weights
    typedef ap_uint<8> wword_t;               // one memory word: simd weights
    typedef ap_int<40> accum_t;               // holds every sum exactly (no wrap)
};

// The lanes of a dense layer: inputs [k, k + SIMD), k = sf * SIMD, the same for
// every PE; a run of SIMD consecutive codes, which the input array's cyclic
// partition (by at least in_lanes = simd, hls/gen_config.py) serves at once.
template <class CONFIG_T>
struct dense_window {
    typedef typename CONFIG_T::in_t in_t;
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned SIMD = CONFIG_T::simd;
    static const unsigned SIDE_MAX = 0;   // no side job
    unsigned k;   // first input of the slice

    void side(const in_t*, const in_t*) {}

    void fetch(const in_t in[CONFIG_T::n_in], unsigned, in_t x[PE][SIMD]) const {
        #pragma HLS INLINE
    DenseLanes:
        for (unsigned s = 0; s < SIMD; s++) {
            #pragma HLS UNROLL
            const in_t v = WQ_AT(in, k + s);
        DenseBroadcast:
            for (unsigned p = 0; p < PE; p++) {
                #pragma HLS UNROLL
                WQ_AT(x[p], s) = v;
            }
        }
    }

    void next(bool last, bool) {
        #pragma HLS INLINE
        k = last ? 0 : k + SIMD;
    }
};

// in: [n_in], out: [n_out], w: packed [n_out][n_in] (wq_loader.h), b: [n_out],
// thr: thresholds (wq_loader.h layout; wq::NO_THRESHOLDS when n_thr is 0).
// One pass of the shared matrix-vector loop (wq_mvau.h) over NF * SF.
template <class CONFIG_T>
void dense(const typename CONFIG_T::in_t in[CONFIG_T::n_in],
           typename CONFIG_T::out_t out[CONFIG_T::n_out],
           const typename CONFIG_T::wword_t w[CONFIG_T::pe][CONFIG_T::wwords],
           const bias_t b[CONFIG_T::n_out], const shift_t shift,
           const thr_t thr[CONFIG_T::thr_rows][CONFIG_T::thr_depth]) {
    #pragma HLS ARRAY_PARTITION variable=w complete dim=1
    static const unsigned PE = CONFIG_T::pe;   // b: one bank a PE (hls/gen_top.py registers it so)
    #pragma HLS ARRAY_PARTITION variable=b cyclic factor=PE dim=1
    #pragma HLS ARRAY_PARTITION variable=thr complete dim=1
    dense_window<CONFIG_T> win;
    win.k = 0;
    unsigned obase = 0;
    mvau<CONFIG_T, 1, CONFIG_T::n_out>(win, in, in, 0, out, obase, w, b, shift, thr);
}

// Index of the FIRST largest value (strict >), numpy.argmax's rule. Runs on the
// full-width sums, as the integer model's int64 argmax does, so a logit that
// wraps in its 32-bit reply word cannot change the class.
template <class CONFIG_T>
word_t argmax(const typename CONFIG_T::out_t acc[CONFIG_T::n_out]) {
    word_t best = 0;
    typename CONFIG_T::out_t best_v = WQ_AT(acc, 0);
ArgMax:
    for (unsigned o = 1; o < CONFIG_T::n_out; o++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(ArgMax, 1, WQ_DEPTH);
        if (WQ_AT(acc, o) > best_v) {
            best_v = WQ_AT(acc, o);
            best = o;
        }
    }
    return best;
}

}  // namespace wq

#endif  // WQ_DENSE_H
