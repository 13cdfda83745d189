// wq_common.h: types and arithmetic shared by every waferq HLS block.
//
// Layout convention: every activation buffer is a flat array in HWC order
// (index = (y * W + x) * C + c), the order of quant/intmodel.py.
#ifndef WQ_COMMON_H
#define WQ_COMMON_H

#include "ap_int.h"
#include "hls_stream.h"

namespace wq {

// One beat of the 32-bit AXI-Stream. Our own struct rather than ap_axiu
// because the hls4ml ap_types folder ships no ap_axi_sdata.h; TKEEP/TSTRB
// are all-ones on a 32-bit DMA stream and not needed.
struct axis_word {
    ap_uint<32> data;
    ap_uint<1> last;
};

typedef ap_uint<32> word_t;    // a stream word, a blob word, a counter of words
typedef ap_int<32> shift_t;    // requant shift from the blob (negative multiplies)
typedef ap_int<32> bias_t;     // biases are int32 in the blob
typedef ap_uint<8> pixel_t;    // input code, INPUT_BITS = 8
typedef ap_int<32> logit_t;    // logits as they travel in the INFER reply

// Largest right shift worth doing: any |acc| < 2**61 shifted further by
// rshift_rhe is 0 already, so capping keeps ap_int<64> from overflowing.
static const int MAX_RSHIFT = 62;
// Largest left shift worth doing before a clamp to at most 8 bits: a
// positive acc << 16 already exceeds every clamp limit.
static const int MAX_LSHIFT = 16;

// acc / 2**shift rounded half to even, then clamped to [0, 2**OUT_BITS - 1]:
// the ReLU-quant of quant/intmodel.py (_requant with rshift_rhe).
// ACC_T: any signed ap_int no wider than 45 bits.
template <unsigned OUT_BITS, class ACC_T>
ap_uint<OUT_BITS> requant_relu(ACC_T acc, shift_t shift) {
    #pragma HLS INLINE
    static const long long MAX_OUT = (1LL << OUT_BITS) - 1;
    ap_int<64> a = acc;
    ap_int<64> y;
    if (shift <= 0) {
        int k = -shift.to_int();
        if (k > MAX_LSHIFT) k = MAX_LSHIFT;
        y = a << k;
    } else {
        int s = shift.to_int();
        if (s > MAX_RSHIFT) s = MAX_RSHIFT;
        ap_int<64> half = ap_int<64>(1) << (s - 1);
        ap_int<64> odd = (a >> s) & 1;  // ties go to the even neighbour
        y = (a + half - 1 + odd) >> s;
    }
    if (y < 0) return 0;
    if (y > MAX_OUT) return ap_uint<OUT_BITS>(MAX_OUT);
    return ap_uint<OUT_BITS>(y);
}

}  // namespace wq

#endif  // WQ_COMMON_H
