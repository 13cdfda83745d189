// wq_common.h: types shared by every waferq HLS block.
//
// Layout convention: every activation buffer is a flat array in HWC order
// (index = (y * W + x) * C + c), the order of contract/intmodel.py.
//
// Folding convention (hls/parallel.py, FINN's): a layer with weights computes
// PE output channels at once, each PE multiplying SIMD fan-in elements at once.
//   NF = out_c / PE        // output-channel groups, one after the other
//   SF = fan_in / SIMD     // fan-in slices each PE walks through
//   FOLD = NF * SF         // cycles an output pixel takes
// Layers without weights use PE only (channels handled at once). Changing PE
// or SIMD reorders no additions that could change the result: sums are exact
// integers, so every folding gives the same bits.
#ifndef WQ_COMMON_H
#define WQ_COMMON_H

#include "ap_int.h"
#include "hls_stream.h"
#include "wq_axis.h"
#include "wq_cycles.h"

namespace wq {

// axis_word, the stream beat of rx and tx, is hls::axis<ap_uint<32>,0,0,0>
// (wq_axis.h).

typedef ap_uint<32> word_t;    // a stream word, a blob word, a counter of words
typedef ap_int<32> shift_t;    // requant shift from the blob (negative multiplies)
typedef ap_int<32> bias_t;     // biases are int32 in the blob
typedef ap_int<32> thr_t;      // thresholds (FINN MultiThreshold) are int32 in the blob
typedef ap_uint<8> pixel_t;    // an input byte; a model's codes are core_config::code_t
typedef ap_int<32> logit_t;    // logits as they travel in the INFER reply
typedef ap_int<64> wide_t;     // what requantization computes in

// One multiply lane of a conv2d, dwconv or dense layer: a * b, exact, in R.
// FABRIC (the layer config's mul_fabric, from hls/cost.py's DSP rule) binds
// the multiplier to LUTs, as the resource estimate counts it; otherwise the tool
// picks (a DSP48E1 at those widths).
template <bool FABRIC>
struct lane_mul {
    template <class R, class A, class B>
    static R mul(A a, B b) {
        #pragma HLS INLINE
        R p = a * b;
        #pragma HLS BIND_OP variable=p op=mul impl=fabric
        return p;
    }
};

template <>
struct lane_mul<false> {
    template <class R, class A, class B>
    static R mul(A a, B b) {
        #pragma HLS INLINE
        R p = a * b;
        return p;
    }
};

// What a layer without thresholds passes for them (thr_rows = thr_depth = 1,
// n_thr = 0: never read).
static const thr_t NO_THRESHOLDS[1][1] = {{0}};

}  // namespace wq

#endif  // WQ_COMMON_H
