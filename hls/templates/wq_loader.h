// wq_loader.h: writes LOAD_WEIGHTS words into the on-chip weight memories as
// they stream in, so the blob is never buffered whole.
//
// Blob section of one weighted layer (quant/blob.py), 32-bit words:
//   word 0                shift, int32
//   words 1 .. n_out      biases, int32
//   the rest              weights, w_bits each, two's complement, LSB first:
//                         value j at bit (j*w_bits)%32 of word (j*w_bits)/32,
//                         zero-padded to a whole word.
#ifndef WQ_LOADER_H
#define WQ_LOADER_H

#include "wq_common.h"

namespace wq {

// Bits left over from the previous word of a section: a value may straddle
// two words when 32 is not a multiple of w_bits.
struct unpack_state {
    ap_uint<64> buf;     // pending bits, the next value in [w_bits-1:0]
    ap_uint<7> nbits;    // how many bits of buf are valid (< w_bits between words)
    ap_uint<32> count;   // weights written so far in this section
};

// pos: word index inside this layer's section (0 = the shift word).
// CONFIG_T: a conv2d_config or dense_config (uses w_bits, n_weights, weight_t
// and n_out/out_c through N_OUT).
template <class CONFIG_T, unsigned N_OUT>
void load_section_word(word_t word, word_t pos,
                       typename CONFIG_T::weight_t w[CONFIG_T::n_weights],
                       bias_t b[N_OUT], shift_t& shift, unpack_state& st) {
    #pragma HLS INLINE
    static const unsigned WB = CONFIG_T::w_bits;
    // Most values one word can complete: 32 new bits plus < WB carried bits.
    static const unsigned MAX_PER_WORD = 32 / WB + 1;
    if (pos == 0) {
        shift = shift_t(word);
        return;
    }
    if (pos <= N_OUT) {
        b[pos - 1] = bias_t(word);
        return;
    }
    if (pos == N_OUT + 1) {  // first weight word: no carry from another layer
        st.buf = 0;
        st.nbits = 0;
        st.count = 0;
    }
    ap_uint<64> buf = st.buf | (ap_uint<64>(word) << st.nbits);
    unsigned nb = st.nbits + 32;
    unsigned count = st.count;
Unpack:
    for (unsigned k = 0; k < MAX_PER_WORD; k++) {
        #pragma HLS UNROLL
        if (nb >= WB && count < CONFIG_T::n_weights) {
            typename CONFIG_T::weight_t v;
            v.range(WB - 1, 0) = buf.range(WB - 1, 0);  // reinterpret as two's complement
            w[count] = v;
            count++;
            buf >>= WB;
            nb -= WB;
        }
    }
    st.buf = buf;
    st.nbits = nb;
    st.count = count;
}

}  // namespace wq

#endif  // WQ_LOADER_H
