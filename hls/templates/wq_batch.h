// wq_batch.h: the parts of INFER_BATCH (protocol/stream.py) that the message
// state machine (wq_core.h) calls: the batch word's checks, one image's words
// from the stream into the image buffer (PACK_U8, or PACK_DIE2 unpacked to
// pixel codes on the fly), one record into the result buffer, and the reply.
//
// Records wait in the result buffer until TLAST and the checksum have been
// checked: a message that fails a check gets one ERROR reply and no records.
//
// CONFIG_T (top_config) members used here:
//   n_pixels      pixels of one image (H * W * C)
//   infer_words   ceil(n_pixels / 4): a PACK_U8 image
//   die2_words    ceil(n_pixels / 16): a PACK_DIE2 image
//   n_classes, feature_words, feature_alloc
//   record_words  2 + n_classes + feature_words: [status, class, logits, features]
//   max_batch     most images a request may carry (hls/batch.py)
//   packings      bit 1 << WQ_PACK_x set for each packing taken
#ifndef WQ_BATCH_H
#define WQ_BATCH_H

#include "wq_common.h"
#include "wq_stream_format.h"
#include "wq_dense.h"   // argmax

namespace wq {

// N codes (HWC) -> ceil(N / 4) words, one byte a code (two's complement for
// signed codes), four a word, first code in bits [7:0]: the INFER image's
// packing, used for the feature map in the reply.
template <unsigned N, unsigned WORDS, class CODE_T>
void pack_codes(const CODE_T codes[N], word_t words[WORDS]) {
PackWords:
    for (unsigned i = 0; i < WORDS; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(PackWords, 1, WQ_DEPTH);
        word_t v = 0;
    PackBytes:
        for (unsigned k = 0; k < 4; k++) {
            #pragma HLS UNROLL
            if (i * 4 + k < N) {
                ap_int<8> code = WQ_AT(codes, i * 4 + k);  // unsigned codes stay below 2**8
                v.range(8 * k + 7, 8 * k) = code.range(7, 0);
            }
        }
        WQ_AT(words, i) = v;
    }
}

// Words of one image in the given packing (a packing the core takes).
template <class CONFIG_T>
word_t batch_image_words(unsigned packing) {
    #pragma HLS INLINE
    return packing == WQ_PACK_DIE2 ? word_t(CONFIG_T::die2_words) : word_t(CONFIG_T::infer_words);
}

// Word 0 of the payload and the length field describe a batch the core can
// take: a packing it supports, 1 <= n <= max_batch, and exactly n images.
template <class CONFIG_T>
bool batch_word_ok(word_t word0, word_t length) {
    #pragma HLS INLINE
    const unsigned packing = word0.range(31, 16);
    const unsigned n = word0.range(15, 0);
    const bool packing_ok = packing < 32 && ((CONFIG_T::packings >> packing) & 1) != 0;
    const bool n_ok = n >= 1 && n <= CONFIG_T::max_batch;
    return packing_ok && n_ok && length == 1 + word_t(n) * batch_image_words<CONFIG_T>(packing);
}

// Four codes of one INFER/PACK_U8 word (first in bits [7:0]) into the image
// buffer at word j. Returns the index within the word (0..3) of the first
// code above 2**in_bits - 1 (an imported graph's narrower input, refused as
// contract.intmodel refuses it; never at 8 bits), or 4 when there is none.
template <class CONFIG_T>
unsigned unpack_u8_word(word_t d, word_t j, typename CONFIG_T::code_t image[CONFIG_T::n_pixels]) {
    #pragma HLS INLINE
    static const unsigned CODE_MAX = (1u << CONFIG_T::in_bits) - 1;
    unsigned first_bad = 4;
UnpackBytes:
    for (unsigned i = 0; i < 4; i++) {
        #pragma HLS UNROLL
        const unsigned k = 3 - i;    // downwards: the lowest bad index wins
        const unsigned p = j * 4 + k;
        const ap_uint<8> byte = d.range(8 * k + 7, 8 * k);
        if (p < CONFIG_T::n_pixels) {
            if (byte > CODE_MAX) first_bad = k;
            WQ_AT(image, p) = byte;
        }
    }
    return first_bad;
}

// One PACK_U8 image: four codes a word, first in bits [7:0]. n and sum go on
// counting the message's words; returns true when TLAST came first (the
// image is incomplete, the TLAST word is the trailer). status: BAD_INPUT when
// a code is above 2**in_bits - 1 (an imported graph's narrower input; never
// at 8 bits), as contract.intmodel refuses it.
template <class CONFIG_T>
bool rx_image_u8(hls::stream<axis_word>& rx, typename CONFIG_T::code_t image[CONFIG_T::n_pixels],
                 word_t& n, word_t& sum, word_t& trailer, word_t& status) {
    bool ended = false, stop = false;
    word_t j = 0;
    status = 0;
RxImageU8:
    while (!stop) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(RxImageU8, 1, WQ_DEPTH);
        WQ_RX_STALL(rx);
        axis_word w = rx.read();
        const word_t d = w.data;
        if (w.last) {
            trailer = d;
            ended = true;
        } else {
            sum += d;
            if (unpack_u8_word<CONFIG_T>(d, j, image) < 4) status = WQ_ERR_BAD_INPUT;
        }
        n++;
        j++;
        stop = ended || j == CONFIG_T::infer_words;
    }
    return ended;
}

// One PACK_DIE2 image: sixteen 2-bit die states a word, first in bits [1:0],
// written as the pixel codes the model was trained on. bad: a state of 3
// among the image's pixels (padding is ignored) makes status BAD_PIXEL. Sixteen pixel writes a word
// into the dual-port image memory take 8 cycles, hence II = 8: two pixels a
// cycle, as PACK_U8 at II = 1 with four writes (II 2 after port limits).
template <class CONFIG_T>
bool rx_image_die2(hls::stream<axis_word>& rx, typename CONFIG_T::code_t image[CONFIG_T::n_pixels],
                   word_t& n, word_t& sum, word_t& trailer, word_t& status) {
    bool ended = false, stop = false;
    word_t j = 0;
    status = 0;
RxImageDie2:
    while (!stop) {
        #pragma HLS PIPELINE II = 8
        WQ_PIPE(RxImageDie2, 8, WQ_DEPTH);
        WQ_RX_STALL(rx);
        axis_word w = rx.read();
        const word_t d = w.data;
        if (w.last) {
            trailer = d;
            ended = true;
        } else {
            sum += d;
        RxStates:
            for (unsigned k = 0; k < 16; k++) {
                #pragma HLS UNROLL
                const unsigned p = j * 16 + k;
                const unsigned s = d.range(2 * k + 1, 2 * k);
                if (p < CONFIG_T::n_pixels) {
                    WQ_AT(image, p) = s == 1 ? pixel_t(WQ_DIE_CODE_PASS)
                                    : s == 2 ? pixel_t(WQ_DIE_CODE_FAIL) : pixel_t(WQ_DIE_CODE_NONE);
                    if (s == 3) status = WQ_ERR_BAD_PIXEL;
                }
            }
        }
        n++;
        j++;
        stop = ended || j == CONFIG_T::die2_words;
    }
    return ended;
}

// Record b: [0, class, logits, features] after an inference (ran), [status,
// 0, ...] for an image with an error of its own (status != 0), all zero
// otherwise (no weights: the message then gets NO_WEIGHTS and no records).
template <class CONFIG_T, unsigned RESULT_WORDS>
void write_record(word_t results[RESULT_WORDS], word_t b, word_t status, bool ran, word_t cls,
                  const logit_t logits[CONFIG_T::n_classes],
                  const word_t features[CONFIG_T::feature_alloc]) {
    static const unsigned K = CONFIG_T::n_classes;
    const word_t base = b * CONFIG_T::record_words;
RecordWords:
    for (unsigned i = 0; i < CONFIG_T::record_words; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(RecordWords, 1, WQ_DEPTH);
        word_t v = 0;
        if (status != 0) {
            if (i == 0) v = status;
        } else if (ran) {
            if (i == 1) v = cls;
            else if (i >= WQ_RECORD_HEAD_WORDS && i < WQ_RECORD_HEAD_WORDS + K)
                v = WQ_AT(logits, i - WQ_RECORD_HEAD_WORDS);  // two's complement bits
            else if (i >= WQ_RECORD_HEAD_WORDS + K)
                v = WQ_AT(features, i - WQ_RECORD_HEAD_WORDS - K);
        }
        WQ_AT(results, base + i) = v;
    }
}

// The message's receive state as one image's source stage leaves it: words
// seen, their running sum, the trailer once TLAST is in. It travels with the
// image to the sink, which hands the last image's copy back to the core.
struct rx_ctl {
    word_t n, sum, trailer;
    bool ended;   // TLAST is in: no more words to read
    word_t status;  // this image's own error (BAD_PIXEL, BAD_INPUT), 0 if none
};

// The first stage of the DATAFLOW region (one call an image): a batch's next
// image from the stream, or the INFER image RxWords already checked and kept.
// The receive state lives here between the images of one message (a stage's
// own state, so no variable is shared between stages); b == 0 takes it from
// the core. After an early TLAST the remaining images read nothing: their
// stages still run (a DATAFLOW region has no conditional stage), and the core
// answers BAD_LENGTH without records.
template <class CONFIG_T>
void source(hls::stream<axis_word>& rx, const bool from_rx, const unsigned packing, const word_t b,
            const rx_ctl& start, const typename CONFIG_T::code_t image[CONFIG_T::n_pixels],
            typename CONFIG_T::code_t img[CONFIG_T::n_pixels], rx_ctl& ctl) {
    static rx_ctl st;
    WQ_LAYER(source);
    if (b == 0) st = start;
    st.status = 0;
    if (!from_rx) {
    ImageCopy:
        for (unsigned i = 0; i < CONFIG_T::infer_words; i++) {
            #pragma HLS PIPELINE II = 1
            WQ_PIPE(ImageCopy, 1, WQ_DEPTH);
        CopyLanes:
            for (unsigned k = 0; k < 4; k++) {
                #pragma HLS UNROLL
                if (i * 4 + k < CONFIG_T::n_pixels) WQ_AT(img, i * 4 + k) = WQ_AT(image, i * 4 + k);
            }
        }
    } else if (!st.ended) {
        if (packing == WQ_PACK_DIE2)
            st.ended = rx_image_die2<CONFIG_T>(rx, img, st.n, st.sum, st.trailer, st.status);
        else
            st.ended = rx_image_u8<CONFIG_T>(rx, img, st.n, st.sum, st.trailer, st.status);
    }
    ctl = st;
}

// The last stage: the logits and class from the last layer's sums, the
// feature map when the core sends it (sink_features), and record b into the
// result buffer. The core's view of the receive state is the last image's
// (ctl_out).
template <class CONFIG_T, class LAST_T>
void finish_record(const typename LAST_T::out_t last[LAST_T::n_out], const word_t features[CONFIG_T::feature_alloc],
                   const rx_ctl& ctl, const bool weights, const word_t b, word_t results[CONFIG_T::result_words],
                   rx_ctl& ctl_out) {
    #pragma HLS INLINE
    logit_t logits[CONFIG_T::n_classes];
    WQ_MEM(logits, WQ_BRAM, 0);
LogitsOut:
    for (unsigned i = 0; i < CONFIG_T::n_classes; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(LogitsOut, 1, WQ_DEPTH);
        WQ_AT(logits, i) = WQ_AT(last, i);  // wraps to int32
    }
    const word_t cls = argmax<LAST_T>(last);
    write_record<CONFIG_T, CONFIG_T::result_words>(results, b, ctl.status, ctl.status == 0 && weights, cls,
                                                   logits, features);
    ctl_out = ctl;
}

template <class CONFIG_T, class LAST_T>
void sink(const typename LAST_T::out_t last[LAST_T::n_out], const rx_ctl& ctl, const bool weights,
          const word_t b, word_t results[CONFIG_T::result_words], rx_ctl& ctl_out) {
    word_t features[CONFIG_T::feature_alloc];   // unread: records have no feature words
    WQ_MEM(features, WQ_BRAM, 0);
    WQ_LAYER(sink);
    finish_record<CONFIG_T, LAST_T>(last, features, ctl, weights, b, results, ctl_out);
}

template <class CONFIG_T, class LAST_T, unsigned FEAT_N, class FEAT_T>
void sink_features(const typename LAST_T::out_t last[LAST_T::n_out], const FEAT_T feat[FEAT_N],
                   const rx_ctl& ctl, const bool weights, const word_t b,
                   word_t results[CONFIG_T::result_words], rx_ctl& ctl_out) {
    word_t features[CONFIG_T::feature_alloc];
    WQ_MEM(features, WQ_BRAM, 0);
    WQ_LAYER(sink);
    pack_codes<FEAT_N, CONFIG_T::feature_alloc>(feat, features);
    finish_record<CONFIG_T, LAST_T>(last, features, ctl, weights, b, results, ctl_out);
}

// A layer output that two stages read: a DATAFLOW channel has one reader, so
// a copy for each (both written in one pass, LANES codes a cycle).
template <class T, unsigned N, unsigned LANES>
void dup2(const T in[N], T a[N], T b[N]) {
    static const unsigned WORDS = (N + LANES - 1) / LANES;
DupWords:
    for (unsigned i = 0; i < WORDS; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(DupWords, 1, WQ_DEPTH);
    DupLanes:
        for (unsigned k = 0; k < LANES; k++) {
            #pragma HLS UNROLL
            if (i * LANES + k < N) {
                const T v = WQ_AT(in, i * LANES + k);
                WQ_AT(a, i * LANES + k) = v;
                WQ_AT(b, i * LANES + k) = v;
            }
        }
    }
}

// A reply whose payload is the first len words of a buffer of MAX: unlike
// send_reply, the loop runs len times, so a batch of 1 does not pay for
// max_batch records.
template <unsigned MAX>
void send_records(hls::stream<axis_word>& tx, unsigned opcode, word_t tag,
                  const word_t payload[MAX], word_t len) {
    static const unsigned MAX_WORDS = MAX;
    word_t head = (word_t(WQ_MAGIC) << 16) | (word_t(WQ_VERSION) << 8) | word_t(opcode & 0xFF);
    word_t sum = head + len + tag;
    tx.write(axis_beat(head, false));
    tx.write(axis_beat(len, false));
    tx.write(axis_beat(tag, false));
ReplyRecords:
    for (word_t i = 0; i < len; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(ReplyRecords, 1, WQ_DEPTH);
        #pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_WORDS
        sum += WQ_AT(payload, i);
        tx.write(axis_beat(WQ_AT(payload, i), false));
    }
    tx.write(axis_beat(sum, true));  // TLAST on the checksum
}

}  // namespace wq

#endif  // WQ_BATCH_H
