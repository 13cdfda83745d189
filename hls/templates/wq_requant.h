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

// Largest right shift worth doing on a wide_t: any |acc| <= 2**61 shifted
// further is 0 already (rq_range<62, ...>::hi; contract.blob.SHIFT_MAX).
static const int MAX_RSHIFT = 62;

// ceil(log2(n)) for n <= 256, without recursion: address bits of a shift amount.
template <unsigned N>
struct rq_clog2 {
    static const unsigned v = N <= 1 ? 0 : N <= 2 ? 1 : N <= 4 ? 2 : N <= 8 ? 3 : N <= 16 ? 4 :  // the bits
                              N <= 32 ? 5 : N <= 64 ? 6 : N <= 128 ? 7 : 8;
};

// The shifts that can change the result of requantizing an IN_W-bit signed
// value to OUT_BITS (hls/cost.py requant_range, the same rule; each
// generated config's rq_shift_lo/hi are checked against this at compile time):
// - lo = -(OUT_BITS + 1): a left shift that far saturates every nonzero value,
//   and the reference clips a left shift there too (rshift_rhe);
// - hi = IN_W: with |acc| <= 2**(IN_W - 1) = half, acc + half - 1 + odd lies
//   in [0, 2**IN_W), so a right shift by IN_W (or more) rounds every value to 0.
// A shift outside [lo, hi] therefore gives what the edge gives, and the core
// clamps the run-time shift to the range before the shifters see it: their
// stage count is the range's, not a 32-bit shift's.
template <unsigned IN_W, unsigned OUT_BITS>
struct rq_range {
    static const int lo = -int(OUT_BITS + 1);
    static const int hi = int(IN_W);
    static const unsigned rbits = rq_clog2<IN_W + 1>::v;      // right shift amount 0..IN_W
    static const unsigned lbits = rq_clog2<OUT_BITS + 2>::v;  // left shift amount 0..OUT_BITS+1
};

// acc / 2**shift rounded half to even (contract.intmodel.rshift_rhe; a negative
// shift multiplies), then clamped to [0, 2**OUT_BITS - 1] when UNSIGNED_OUT
// (ReLU-quant) or to [-2**(OUT_BITS-1), 2**(OUT_BITS-1) - 1] otherwise; exact
// for any int32 shift. acc: IN_W signed bits (the layer's accumulator with
// its bias, config member rq_bits), OUT_BITS: 1..16.
// Hardware: the right shift runs on IN_W + 1 bits (acc plus rounding), but
// only OUT_BITS + 2 bits of its result are kept, so synthesis trims each
// stage of the barrel shifter to what the later stages need; whether the
// rest of the result would overflow that is a mask test (a decoder of the
// shift amount), not a wide compare. The left shift only ever sees a value
// pre-clamped to OUT_BITS + 3 bits.
template <unsigned IN_W, unsigned OUT_BITS, bool UNSIGNED_OUT>
ap_int<OUT_BITS + 1> requant_w(ap_int<IN_W> acc, shift_t shift) {
    #pragma HLS INLINE
    typedef rq_range<IN_W, OUT_BITS> R;
    static const int HI = UNSIGNED_OUT ? (1 << OUT_BITS) - 1 : (1 << (OUT_BITS - 1)) - 1;
    static const int LO = UNSIGNED_OUT ? 0 : -(1 << (OUT_BITS - 1));
    static const unsigned W = IN_W + 1;   // acc + half - 1 + odd fits W signed bits
    static const unsigned OW = OUT_BITS + 2;  // quotient bits kept: the clamp range and one more
    ap_int<OUT_BITS + 1> res;
    if (shift <= 0) {
        const ap_uint<R::lbits> k = shift < R::lo ? ap_uint<R::lbits>(-R::lo) : ap_uint<R::lbits>(-shift);
        // |acc| past 2**(OUT_BITS+1) clamps to the same bound either way.
        static const int BIG = 1 << (OUT_BITS + 1);
        const ap_int<OUT_BITS + 3> a = acc > BIG ? ap_int<OUT_BITS + 3>(BIG)
                                       : acc < -BIG ? ap_int<OUT_BITS + 3>(-BIG) : ap_int<OUT_BITS + 3>(acc);
        const ap_int<2 * OUT_BITS + 4> y = ap_int<2 * OUT_BITS + 4>(a) << k;
        res = y < LO ? ap_int<OUT_BITS + 1>(LO) : y > HI ? ap_int<OUT_BITS + 1>(HI) : ap_int<OUT_BITS + 1>(y);
    } else {
        const ap_uint<R::rbits> r = shift > R::hi ? ap_uint<R::rbits>(R::hi) : ap_uint<R::rbits>(shift);
        const ap_int<W> a = acc;
        const ap_int<W> half_m1 = (ap_int<W>(1) << (r - 1)) - 1;
        const ap_uint<1> odd = a[r];   // ties go to the even neighbour
        const ap_int<W> t = a + half_m1 + odd;
        const ap_int<OW> q = t >> r;   // the kept low bits of the quotient
        // The quotient fits OW signed bits iff every bit of t from r + OW - 1 up
        // equals t's sign (the mask is built wide enough for any r).
        const ap_uint<W + OW> ones = ~ap_uint<W + OW>(0);
        const ap_uint<W> mask = ap_uint<W>(ones << (r + (OW - 1)));
        const bool neg = t[W - 1];
        const ap_uint<W> bits = neg ? ap_uint<W>(~ap_uint<W>(t)) : ap_uint<W>(t);
        if ((bits & mask) != 0) res = neg ? ap_int<OUT_BITS + 1>(LO) : ap_int<OUT_BITS + 1>(HI);
        else res = q < LO ? ap_int<OUT_BITS + 1>(LO) : q > HI ? ap_int<OUT_BITS + 1>(HI) : ap_int<OUT_BITS + 1>(q);
    }
    return res;
}

// The same on a wide_t (|acc| <= 2**61): what a caller without a narrower
// width gets, and the reference point of tests/test_blob_ranges.py.
template <unsigned OUT_BITS, bool UNSIGNED_OUT>
wide_t requant(wide_t acc, shift_t shift) {
    #pragma HLS INLINE
    return wide_t(requant_w<MAX_RSHIFT, OUT_BITS, UNSIGNED_OUT>(ap_int<MAX_RSHIFT>(acc), shift));
}

// The requant of a layer config: CONFIG_T::rq_bits (the signed width of what
// it requantizes), CONFIG_T::out_bits, CONFIG_T::relu.
template <class CONFIG_T>
typename CONFIG_T::out_t requant_out(wide_t acc, shift_t shift) {
    #pragma HLS INLINE
    return typename CONFIG_T::out_t(
        requant_w<CONFIG_T::rq_bits, CONFIG_T::out_bits, CONFIG_T::relu>(ap_int<CONFIG_T::rq_bits>(acc), shift));
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
    static const unsigned rq_bits = 8;        // signed width of an input code
    static const int rq_shift_lo = -9;        // shifts that matter (rq_range<rq_bits, out_bits>)
    static const int rq_shift_hi = 8;
    typedef ap_int<8> in_t;
    typedef ap_int<8> out_t;
};

// in, out: [out_h][out_w][out_c] HWC. One flattened II=1 loop, PE
// consecutive codes an iteration.
template <class CONFIG_T>
void quant(const typename CONFIG_T::in_t in[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
           typename CONFIG_T::out_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
           const shift_t shift) {
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned ITERS = CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::nf;  // PE codes each
QuantStream:
    for (unsigned it = 0; it < ITERS; it++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(QuantStream, 1, WQ_DEPTH);
    QuantPe:
        for (unsigned q = 0; q < PE; q++) {
            #pragma HLS UNROLL
            const unsigned i = it * PE + q;
            WQ_AT(out, i) = requant_out<CONFIG_T>(wide_t(WQ_AT(in, i)), shift);
        }
    }
}

}  // namespace wq

#endif  // WQ_REQUANT_H
