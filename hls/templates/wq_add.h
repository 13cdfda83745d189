// wq_add.h: element-wise add of two branches of one shape. Each input is
// first requantized to the shared signed align_bits scale (shift_a, shift_b),
// the two are summed, and the sum is requantized to the output (shift).
#ifndef WQ_ADD_H
#define WQ_ADD_H

#include "wq_common.h"
#include "wq_requant.h"

namespace wq {

struct add_config {
    static const unsigned out_h = 1;          // rows of both inputs and the output
    static const unsigned out_w = 1;          // columns
    static const unsigned out_c = 1;          // channels
    static const unsigned pe = 1;             // channels added at once; divides out_c
    static const unsigned nf = 1;             // out_c / pe: channel groups a pixel
    static const unsigned align_bits = 9;     // signed width both inputs are aligned to
    static const unsigned out_bits = 8;       // output width after requantization
    static const bool relu = false;           // unsigned (ReLU-quant) or signed output
    static const unsigned n_shifts = 3;       // shift_a, shift_b, shift (blob order)
    static const unsigned blob_offset = 0;    // first word of this layer's blob section
    static const unsigned section_words = 3;  // contract.blob.section_words
    static const unsigned rq_a_bits = 9;      // signed width of a code of a, of b, and of
    static const unsigned rq_b_bits = 9;      // the aligned sum (align_bits + 1) the output
    static const unsigned rq_bits = 10;       // requant takes
    static const int rq_shift_lo = -9;        // shifts that matter to the output requant
    static const int rq_shift_hi = 10;        // (rq_range<rq_bits, out_bits>)
    typedef ap_int<8> in_t;                   // first input (a)
    typedef ap_int<8> in_b_t;                 // second input (b)
    typedef ap_int<8> out_t;
};

// a, b, out: [out_h][out_w][out_c] HWC; shifts: {shift_a, shift_b, shift}.
// One flattened II=1 loop: PE consecutive codes of each array an iteration.
template <class CONFIG_T>
void add(const typename CONFIG_T::in_t a[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
         const typename CONFIG_T::in_b_t b[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
         typename CONFIG_T::out_t out[CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::out_c],
         const shift_t shifts[3]) {
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned AB = CONFIG_T::align_bits;  // signed width of the aligned inputs
    static const unsigned ITERS = CONFIG_T::out_h * CONFIG_T::out_w * CONFIG_T::nf;  // PE codes each
    const shift_t sa = WQ_AT(shifts, 0), sb = WQ_AT(shifts, 1), so = WQ_AT(shifts, 2);
AddStream:
    for (unsigned it = 0; it < ITERS; it++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(AddStream, 1, WQ_DEPTH);
    AddPe:
        for (unsigned p = 0; p < PE; p++) {
            #pragma HLS UNROLL
            const unsigned j = it * PE + p;
            const ap_int<AB + 1> xa = requant_w<CONFIG_T::rq_a_bits, AB, false>(
                ap_int<CONFIG_T::rq_a_bits>(WQ_AT(a, j)), sa);
            const ap_int<AB + 1> xb = requant_w<CONFIG_T::rq_b_bits, AB, false>(
                ap_int<CONFIG_T::rq_b_bits>(WQ_AT(b, j)), sb);
            WQ_AT(out, j) = requant_out<CONFIG_T>(wide_t(xa + xb), so);
        }
    }
}

}  // namespace wq

#endif  // WQ_ADD_H
