// wq_dense.h: the logits layer (fully connected, no activation) and argmax.
#ifndef WQ_DENSE_H
#define WQ_DENSE_H

#include "wq_common.h"

namespace wq {

struct dense_config {
    static const unsigned n_in = 1;           // in_features, HWC flatten order of the last pool
    static const unsigned n_out = 1;          // out_features = n_classes
    static const unsigned w_bits = 8;         // weight width in the blob
    static const unsigned n_weights = 1;      // n_out * n_in
    static const unsigned blob_offset = 0;    // first word of this layer's blob section
    static const unsigned section_words = 1;  // 1 shift + n_out biases + packed weights
    static const unsigned reuse_factor = 1;   // initiation interval of the MAC loop
    typedef ap_uint<8> in_t;
    typedef ap_int<8> weight_t;
    typedef ap_int<40> accum_t;               // holds every logit exactly (no wrap)
};

// in: [n_in], w: [n_out][n_in], acc: [n_out] full-width sums (bias included).
template <class CONFIG_T>
void dense(const typename CONFIG_T::in_t in[CONFIG_T::n_in],
           typename CONFIG_T::accum_t acc[CONFIG_T::n_out],
           const typename CONFIG_T::weight_t w[CONFIG_T::n_weights],
           const bias_t b[CONFIG_T::n_out]) {
DenseOut:
    for (unsigned o = 0; o < CONFIG_T::n_out; o++) {
        typename CONFIG_T::accum_t sum = b[o];
    DenseIn:
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
            #pragma HLS PIPELINE II = CONFIG_T::reuse_factor
            sum += in[i] * w[o * CONFIG_T::n_in + i];
        }
        acc[o] = sum;
    }
}

// Index of the FIRST largest value (strict >), numpy.argmax's rule. Runs on the
// full-width sums, as the integer model's int64 argmax does, so a logit that
// wraps in its 32-bit reply word cannot change the class.
template <class CONFIG_T>
word_t argmax(const typename CONFIG_T::accum_t acc[CONFIG_T::n_out]) {
    word_t best = 0;
    typename CONFIG_T::accum_t best_v = acc[0];
ArgMax:
    for (unsigned o = 1; o < CONFIG_T::n_out; o++) {
        #pragma HLS PIPELINE II = 1
        if (acc[o] > best_v) {
            best_v = acc[o];
            best = o;
        }
    }
    return best;
}

}  // namespace wq

#endif  // WQ_DENSE_H
