// wq_loader.h: writes LOAD_WEIGHTS words into the on-chip parameter memories
// as they stream in, so the blob is never buffered whole.
//
// Blob section of one layer (contract/blob.py), 32-bit words:
//   n_shifts words        shift(s), int32 (1, or 3 for add: shift_a, shift_b,
//                         shift; none for a thresholds layer)
//   n_out words           conv2d/dense only: biases, int32
//   n_out * n_thr words   thresholds layers only: int32 [oc][k], channel by channel
//   the rest              conv2d/dense only: weights, w_bits each, two's
//                         complement (w_bits 1: bipolar, bit 1 = +1, bit 0 = -1),
//                         LSB first: value j at bit (j*w_bits)%32
//                         of word (j*w_bits)/32, zero-padded to a whole word.
//
// Threshold memory layout: ``thr_t thr[PE * N_THR][NF]``, one row (a bank
// after complete dim=1 partitioning) per (pe, k): threshold k of output channel
// oc = nf * PE + pe at thr[pe * N_THR + k][nf], so one output group's PE * N_THR
// comparisons read every bank once (FINN's threshold memory, one bank a
// comparator).
//
// Weight memory layout: ``wword_t w[PE][WWORDS]``, WWORDS = NF * SF, one
// word = the SIMD weights (SIMD * w_bits bits, weight s in bits
// [s*w_bits + w_bits-1 : s*w_bits]) that one PE multiplies in one cycle:
// output channel oc = nf * PE + pe, fan-in elements sf*SIMD .. sf*SIMD+SIMD-1,
// at w[pe][nf * SF + sf]. Because the blob orders weights [oc][fan-in] and
// SIMD divides the fan-in, every memory word is one contiguous SIMD*w_bits
// slice of the section's LSB-first bit stream: slice c (c = oc * SF + sf)
// goes to pe = (c / SF) % PE, address (c / SF / PE) * SF + c % SF. So the
// loader only cuts the bit stream into slices and routes them; a 2-bit layer
// stores exactly 2 bits a weight (storage = n_weights * w_bits bits, checked
// by a static assert in the generated config).
#ifndef WQ_LOADER_H
#define WQ_LOADER_H

#include "wq_common.h"

namespace wq {

// A layer with a shift but no weights. pos: word index inside the section.
template <class CONFIG_T>
void load_shift_word(word_t word, word_t pos, shift_t shifts[CONFIG_T::n_shifts]) {
    #pragma HLS INLINE
    if (pos < CONFIG_T::n_shifts) WQ_AT(shifts, pos) = shift_t(word);
}

// Routes one weight word of a conv2d or dense section into the weight memory.
// CONFIG_T: pe, sf, wwords, word_bits, wword_t (see wq_conv2d.h). first: the
// section's first weight word (restarts the routing). Words must arrive in
// order, as the stream brings them.
template <class CONFIG_T>
void route_weight_word(word_t word, bool first,
                       typename CONFIG_T::wword_t w[CONFIG_T::pe][CONFIG_T::wwords]) {
    #pragma HLS INLINE
    static const unsigned CHUNK = CONFIG_T::word_bits;            // bits of one memory word
    static const unsigned MAX_PER_WORD = 32 / CHUNK + 1;          // slices one blob word can complete
    static const unsigned N_CHUNKS = CONFIG_T::pe * CONFIG_T::wwords;  // memory words of the layer
    // Bits not yet routed: fewer than CHUNK between blob words.
    static ap_uint<CHUNK + 32> buf = 0;
    static unsigned nbits = 0;
    static unsigned sf = 0, pe = 0, nf = 0, done = 0;  // where the next slice goes
    if (first) {  // nothing carried from before
        buf = 0;
        nbits = 0;
        sf = pe = nf = done = 0;
    }
    ap_uint<CHUNK + 32> wide = word;
    buf |= wide << nbits;
    nbits += 32;
LoadSlices:
    for (unsigned k = 0; k < MAX_PER_WORD; k++) {
        #pragma HLS UNROLL
        if (nbits >= CHUNK && done < N_CHUNKS) {
            WQ_AT(w[pe], nf * CONFIG_T::sf + sf) = buf.range(CHUNK - 1, 0);
            buf >>= CHUNK;
            nbits -= CHUNK;
            done++;
            if (++sf == CONFIG_T::sf) {
                sf = 0;
                if (++pe == CONFIG_T::pe) {
                    pe = 0;
                    nf++;
                }
            }
        }
    }
}

// A conv2d or dense layer that requantizes by shift (or the logits layer).
// CONFIG_T: n_shifts, n_out and route_weight_word's. pos: word index inside
// the section.
template <class CONFIG_T>
void load_weighted_word(word_t word, word_t pos, shift_t shifts[CONFIG_T::n_shifts],
                        bias_t b[CONFIG_T::n_out],
                        typename CONFIG_T::wword_t w[CONFIG_T::pe][CONFIG_T::wwords]) {
    #pragma HLS INLINE
    const unsigned first_w = CONFIG_T::n_shifts + CONFIG_T::n_out;
    if (pos < CONFIG_T::n_shifts) {
        WQ_AT(shifts, pos) = shift_t(word);
    } else if (pos < first_w) {
        WQ_AT(b, pos - CONFIG_T::n_shifts) = bias_t(word);
    } else {
        route_weight_word<CONFIG_T>(word, pos == first_w, w);
    }
}

// A conv2d or dense layer with thresholds (FINN MultiThreshold, no shift word).
// CONFIG_T: n_out, n_thr, thr_rows, thr_depth and route_weight_word's.
template <class CONFIG_T>
void load_threshold_word(word_t word, word_t pos, bias_t b[CONFIG_T::n_out],
                         thr_t thr[CONFIG_T::thr_rows][CONFIG_T::thr_depth],
                         typename CONFIG_T::wword_t w[CONFIG_T::pe][CONFIG_T::wwords]) {
    #pragma HLS INLINE
    const unsigned first_t = CONFIG_T::n_out;
    const unsigned first_w = first_t + CONFIG_T::n_out * CONFIG_T::n_thr;
    if (pos < first_t) {
        WQ_AT(b, pos) = bias_t(word);
    } else if (pos < first_w) {
        const unsigned t = pos - first_t;               // [oc][k] order
        const unsigned oc = t / CONFIG_T::n_thr;
        const unsigned k = t % CONFIG_T::n_thr;
        WQ_AT(thr[(oc % CONFIG_T::pe) * CONFIG_T::n_thr + k], oc / CONFIG_T::pe) = thr_t(word);
    } else {
        route_weight_word<CONFIG_T>(word, pos == first_w, w);
    }
}

// Weight s of a memory word, sign-extended to WEIGHT_T (ap_int<w_bits>); a
// 1-bit weight is bipolar (bit 1 = +1, bit 0 = -1) in WEIGHT_T = ap_int<2>.
template <class WEIGHT_T, unsigned W_BITS, class WWORD_T>
WEIGHT_T weight_at(const WWORD_T& word, unsigned s) {
    #pragma HLS INLINE
    if (W_BITS == 1) return word[s] ? WEIGHT_T(1) : WEIGHT_T(-1);
    WEIGHT_T v;
    v.range(W_BITS - 1, 0) = word.range(s * W_BITS + W_BITS - 1, s * W_BITS);
    return v;
}

}  // namespace wq

#endif  // WQ_LOADER_H
