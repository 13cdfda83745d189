// wq_requant.h: requantization, and the "quant" layer that is nothing else.
//
// Our export uses power-of-two scales, so every requantization it writes is a
// multiply-shift with multiplier 1: a pure arithmetic shift by a run-time
// ``shift`` (from the blob) rounding half to even, then a clamp to the output
// width. An imported model (a batch norm before a multi-bit quantizer, FINN's
// MultiThreshold) requantizes by thresholds instead: the output code is the
// number of the channel's 2**out_bits - 1 run-time thresholds the accumulator
// reaches (``activate``; contract/graph.py ``act`` "thresholds").
#ifndef WQ_REQUANT_H
#define WQ_REQUANT_H

#include "wq_common.h"

namespace wq {

// Largest right shift worth doing: any |acc| < 2**61 shifted further is 0
// (or -1 before rounding) already, so capping keeps ap_int<64> in range.
static const int MAX_RSHIFT = 62;

// acc / 2**shift rounded half to even (contract.intmodel.rshift_rhe; a negative
// shift multiplies), then clamped to [0, 2**OUT_BITS - 1] when UNSIGNED_OUT
// (ReLU-quant) or to [-2**(OUT_BITS-1), 2**(OUT_BITS-1) - 1] otherwise.
// acc: |acc| < 2**61. OUT_BITS: 2..16. Any int32 shift gives the exact result
// (both caps only skip shifting that cannot change it); the service also
// refuses shifts outside contract.blob.SHIFT_MIN..SHIFT_MAX at load.
template <unsigned OUT_BITS, bool UNSIGNED_OUT>
wide_t requant(wide_t acc, shift_t shift) {
    #pragma HLS INLINE
    static const long long HI = UNSIGNED_OUT ? (1LL << OUT_BITS) - 1 : (1LL << (OUT_BITS - 1)) - 1;
    static const long long LO = UNSIGNED_OUT ? 0 : -(1LL << (OUT_BITS - 1));
    // A left shift past OUT_BITS + 1 saturates every nonzero acc already.
    static const int MAX_LSHIFT = OUT_BITS + 1;
    wide_t y;
    if (shift <= 0) {
        // Negate in 64 bits: -(-2**31) does not fit an int, and a negative
        // count would make the ap_int shift recurse (a blob's shift is any int32).
        long long k = -(long long)shift.to_int();
        if (k > MAX_LSHIFT) k = MAX_LSHIFT;
        // Saturate before shifting: an |acc| past 2**(OUT_BITS+1) clamps to
        // the same bound either way, and the shift can then not wrap 64 bits.
        static const long long BIG = 1LL << (OUT_BITS + 1);
        const wide_t a = acc > BIG ? wide_t(BIG) : acc < -BIG ? wide_t(-BIG) : acc;
        y = a << int(k);
    } else {
        int s = shift.to_int();
        if (s > MAX_RSHIFT) s = MAX_RSHIFT;
        wide_t half = wide_t(1) << (s - 1);
        wide_t odd = (acc >> s) & 1;  // ties go to the even neighbour
        y = (acc + half - 1 + odd) >> s;
    }
    if (y < LO) return LO;
    if (y > HI) return HI;
    return y;
}

// The requant of a layer config: CONFIG_T::out_bits, CONFIG_T::relu.
template <class CONFIG_T>
typename CONFIG_T::out_t requant_out(wide_t acc, shift_t shift) {
    #pragma HLS INLINE
    return typename CONFIG_T::out_t(requant<CONFIG_T::out_bits, CONFIG_T::relu>(acc, shift));
}

// FINN MultiThreshold: how many of output channel (nf * PE + p)'s N_THR
// thresholds acc reaches, count(acc >= T[k]); no order of the thresholds is
// assumed. thr: [PE * N_THR][NF], one bank a row (wq_loader.h layout), so the
// PE * N_THR comparisons of an output group read each bank once.
template <class CONFIG_T>
typename CONFIG_T::out_t threshold_count(wide_t acc, const thr_t thr[CONFIG_T::thr_rows][CONFIG_T::thr_depth],
                                         unsigned p, unsigned nf) {
    #pragma HLS INLINE
    ap_uint<CONFIG_T::out_bits + 1> n = 0;
ThrCompare:
    for (unsigned k = 0; k < CONFIG_T::n_thr; k++) {
        #pragma HLS UNROLL
        if (acc >= wide_t(WQ_AT(thr[p * CONFIG_T::n_thr + k], nf))) n++;
    }
    return typename CONFIG_T::out_t(n);
}

// A conv2d or dense layer's output code: thresholds when the layer has them
// (CONFIG_T::n_thr > 0), else the shift requant.
template <class CONFIG_T>
typename CONFIG_T::out_t activate(wide_t acc, shift_t shift,
                                  const thr_t thr[CONFIG_T::thr_rows][CONFIG_T::thr_depth],
                                  unsigned p, unsigned nf) {
    #pragma HLS INLINE
    if (CONFIG_T::n_thr > 0) return threshold_count<CONFIG_T>(acc, thr, p, nf);
    return requant_out<CONFIG_T>(acc, shift);
}

// Base of every generated "quant" layer config (requantization only).
struct quant_config {
    static const unsigned out_h = 1;          // rows (unchanged)
    static const unsigned out_w = 1;          // columns (unchanged)
    static const unsigned out_c = 1;          // channels (unchanged)
    static const unsigned pe = 1;             // channels requantized at once; divides out_c
    static const unsigned nf = 1;             // out_c / pe: channel groups a pixel
    static const unsigned out_bits = 8;       // output width
    static const bool relu = false;           // unsigned (ReLU-quant) or signed output
    static const unsigned n_shifts = 1;       // blob words before the next section: the shift
    static const unsigned blob_offset = 0;    // first word of this layer's blob section
    static const unsigned section_words = 1;  // contract.blob.section_words
    typedef ap_int<8> in_t;
    typedef ap_int<8> out_t;
};

// in, out: [out_h][out_w][out_c] HWC.
template <class CONFIG_T>
void quant(const typename CONFIG_T::in_t in[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
           typename CONFIG_T::out_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
           const shift_t shift) {
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned NPIX = CONFIG_T::out_h * CONFIG_T::out_w;
QuantPixels:
    for (unsigned p = 0; p < NPIX; p++) {
        WQ_SEQ(QuantPixels);
    QuantFold:
        for (unsigned f = 0; f < CONFIG_T::nf; f++) {
            #pragma HLS PIPELINE II = 1
            WQ_PIPE(QuantFold, 1, WQ_DEPTH);
        QuantPe:
            for (unsigned q = 0; q < PE; q++) {
                #pragma HLS UNROLL
                const unsigned i = p * CONFIG_T::out_c + f * PE + q;
                WQ_AT(out, i) = requant_out<CONFIG_T>(wide_t(WQ_AT(in, i)), shift);
            }
        }
    }
}

}  // namespace wq

#endif  // WQ_REQUANT_H
