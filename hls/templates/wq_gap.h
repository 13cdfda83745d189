// wq_gap.h: global average pooling as the integer model does it: the sum
// over H and W per channel, then requantization (the 1/(H*W) is folded into
// the shift as a power of two, contract.graph's sum_shift).
#ifndef WQ_GAP_H
#define WQ_GAP_H

#include "wq_common.h"
#include "wq_requant.h"

namespace wq {

struct gap_config {
    static const unsigned in_h = 1;           // input rows
    static const unsigned in_w = 1;           // input columns
    static const unsigned in_c = 1;           // channels (= out_c; the output is 1x1)
    static const unsigned pe = 1;             // channels summed at once; divides in_c
    static const unsigned nf = 1;             // in_c / pe: channel groups
    static const unsigned out_bits = 8;       // output width after requantization
    static const bool relu = true;            // unsigned (ReLU-quant) or signed output
    static const unsigned n_shifts = 1;       // shift words at the head of the blob section
    static const unsigned blob_offset = 0;    // first word of this layer's blob section
    static const unsigned section_words = 1;  // contract.blob.section_words
    typedef ap_uint<8> in_t;
    typedef ap_uint<8> out_t;
    static const unsigned rq_bits = 24;       // signed width requantized: sum_t's
    static const int rq_shift_lo = -9;        // shifts that matter (rq_range<rq_bits, out_bits>)
    static const int rq_shift_hi = 24;
    typedef ap_int<24> sum_t;                 // holds in_h * in_w codes summed
};

// in: [in_h][in_w][in_c] HWC, out: [in_c]. One flattened II=1 loop over
// (channel group, pixel): PE consecutive codes of one pixel an iteration, summed
// in registers; the group's PE outputs are requantized and written with its
// last pixel.
template <class CONFIG_T>
void gap(const typename CONFIG_T::in_t in[CONFIG_T::in_h * CONFIG_T::in_w * CONFIG_T::in_c],
         typename CONFIG_T::out_t out[CONFIG_T::in_c], const shift_t shift) {
    static const unsigned PE = CONFIG_T::pe;
    static const unsigned C = CONFIG_T::in_c;
    static const unsigned NPIX = CONFIG_T::in_h * CONFIG_T::in_w;
    typename CONFIG_T::sum_t acc[PE];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    WQ_MEM(acc, WQ_REGS, 0);
    unsigned f = 0, i = 0;
GapStream:
    for (unsigned it = 0; it < CONFIG_T::nf * NPIX; it++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(GapStream, 1, WQ_DEPTH);
    GapPe:
        for (unsigned p = 0; p < PE; p++) {
            #pragma HLS UNROLL
            const typename CONFIG_T::sum_t x = WQ_AT(in, i * C + f * PE + p);
            const typename CONFIG_T::sum_t s = i == 0 ? x : typename CONFIG_T::sum_t(WQ_AT(acc, p) + x);
            WQ_AT(acc, p) = s;
            if (i == NPIX - 1) WQ_AT(out, f * PE + p) = requant_out<CONFIG_T>(wide_t(s), shift);
        }
        if (++i == NPIX) {
            i = 0;
            f++;
        }
    }
}

}  // namespace wq

#endif  // WQ_GAP_H
