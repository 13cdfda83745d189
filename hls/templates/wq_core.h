// wq_core.h: the message state machine of the top: one request in (up to
// TLAST), one reply out. hls/refcore.py is its golden model; the error
// precedence and the LOAD_WEIGHTS side effect below follow it exactly.
//
// Request words: [header][length][tag][payload x length][checksum], TLAST on
// the checksum. The core never buffers a message: it keeps the header fields,
// a word count and a running sum, hands payload words to the weight loader or
// the image buffer as they arrive, and decides the reply at TLAST. An
// INFER_BATCH runs each image as soon as its words are in and keeps only the
// records (wq_batch.h), which it sends after TLAST and the checksum.
//
// MODEL_T::run_images has one call site, shared by INFER and INFER_BATCH, so
// synthesis makes one instance of the network: a DATAFLOW region whose stages
// are the layers, so that images of a batch overlap and the slowest layer,
// not the sum of them, sets the interval between images.
#ifndef WQ_CORE_H
#define WQ_CORE_H

#include "wq_common.h"
#include "wq_stream_format.h"

// C-sim harness hook (hls/generate.py CSIM_HOOKS, compiled in with g++
// -include by hls/csim_build.py only): where the RTL core would wait on an
// empty RX FIFO, the harness stops the call, so a test can cut a message there
// and soft-reset the core. Defined empty for Vitis (synthesis and its C-sim).
#ifndef WQ_RX_STALL
#define WQ_RX_STALL(stream)
#endif

#include "wq_batch.h"

#ifndef WQ_RX_II
#define WQ_RX_II 1
#endif

namespace wq {

// Base of the generated top config.
struct core_config {
    static const unsigned topology_hash = 0;   // contract.graph.topology_hash of the layer list
    static const unsigned core_version = 1;    // hls.gen_config.CORE_VERSION
    static const unsigned in_h = 1;            // input rows
    static const unsigned in_w = 1;            // input columns
    static const unsigned in_c = 1;            // input channels
    static const unsigned in_bits = 8;         // input code width (1..8); larger codes are refused
    typedef pixel_t code_t;                    // ap_uint<in_bits>: one input code in the image buffer
    static const unsigned n_pixels = 1;        // in_h * in_w * in_c
    static const unsigned infer_words = 1;     // ceil(n_pixels / 4): 4 pixels a word
    static const unsigned n_classes = 1;       // logits in the INFER reply
    static const unsigned blob_words = 1;      // LOAD_WEIGHTS payload length
    static const unsigned max_reply_words = 1; // largest reply payload
    static const unsigned capabilities = WQ_CAP_RUNTIME_WEIGHTS | WQ_CAP_LOGITS;  // QUERY bits
    static const unsigned feature_words = 0;   // feature-map words after the logits (0: off)
    static const unsigned feature_alloc = 1;   // max(1, feature_words): the array never has size 0
    static const unsigned die2_words = 1;      // ceil(n_pixels / 16): a PACK_DIE2 image
    static const unsigned record_words = 3;    // 2 + n_classes + feature_words: one INFER_BATCH record
    static const unsigned max_batch = 1;       // most images in one INFER_BATCH (hls/batch.py)
    static const unsigned result_words = 3;    // max_batch * record_words: the result buffer
    static const unsigned packings = 1u << WQ_PACK_U8;  // QUERY bits 1 << WQ_PACK_x
};

// What survives between calls.
struct core_state {
    bool weights_loaded;
    word_t weights_checksum;
};

// Its reset value: no weights loaded.
inline void clear_state(core_state& st) {
    #pragma HLS INLINE
    st.weights_loaded = false;
    st.weights_checksum = 0;
}

template <unsigned MAX>
void send_reply(hls::stream<axis_word>& tx, unsigned opcode, word_t tag,
                const word_t payload[MAX], unsigned len) {
    word_t head = (word_t(WQ_MAGIC) << 16) | (word_t(WQ_VERSION) << 8) | word_t(opcode & 0xFF);
    word_t sum = head + word_t(len) + tag;
    tx.write(axis_beat(head, false));
    tx.write(axis_beat(len, false));
    tx.write(axis_beat(tag, false));
ReplyPayload:
    for (unsigned i = 0; i < MAX; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(ReplyPayload, 1, WQ_DEPTH);
        if (i < len) {
            sum += WQ_AT(payload, i);
            tx.write(axis_beat(WQ_AT(payload, i), false));
        }
    }
    tx.write(axis_beat(sum, true));  // TLAST on the checksum, the reply's last word
}

template <unsigned MAX>
void send_error(hls::stream<axis_word>& tx, word_t tag, unsigned code, word_t detail) {
    word_t p[MAX];
    WQ_MEM(p, WQ_BRAM, 0);
    p[0] = code;  // not counted: an error reply is no inference
    p[1] = detail;
    send_reply<MAX>(tx, WQ_OP_ERROR, tag, p, 2);
}

// MODEL_T supplies the generated, topology-specific parts:
//   static void load_word(word_t word, word_t index);   // index into the blob
//   static void run_images(rx, n, from_rx, packing, weights, start, image,
//                          results, last);  // the DATAFLOW region, n images:
//       source (wq_batch.h) -> layers -> sink: record b into results
template <class CONFIG_T, class MODEL_T>
void handle_message(hls::stream<axis_word>& rx, hls::stream<axis_word>& tx, core_state& st) {
    static const unsigned MAXR = CONFIG_T::max_reply_words;
    static const unsigned MAXB = CONFIG_T::max_batch;
    static typename CONFIG_T::code_t image[CONFIG_T::n_pixels];
    static word_t results[CONFIG_T::result_words];  // INFER_BATCH records until TLAST
    // Codes travel as bytes; one above 2**in_bits - 1 is refused (hls/inputs.py,
    // unpack_u8_word).
    // Four codes a stream word land in four banks (RxWords at II 1).
    #pragma HLS ARRAY_PARTITION variable=image cyclic factor=4
    WQ_MEM(image, WQ_CYCLIC, 4);
    WQ_MEM(results, WQ_BRAM, 0);
    WQ_LAYER(core);

    word_t n = 0;          // words seen, TLAST word included once it arrives
    word_t sum = 0;        // checksum of every word before the TLAST word
    word_t head = 0, length = 0, tag = 0, trailer = 0;
    bool hdr_ok = false;   // checks 2-4 pass (valid once word 1 is in)
    bool writes = false;   // a LOAD_WEIGHTS that streams into the weight memories
    bool is_infer = false;
    bool is_batch = false; // an INFER_BATCH header
    bool batch_ok = false; // its word 0 and length describe a batch: the images follow
    word_t word0 = 0;      // INFER_BATCH payload word 0: [31:16] packing ([31:24] zero), [15:0] n
    bool bad_code = false; // an image code above 2**in_bits - 1 (never set when in_bits is 8)
    word_t bad_at = 0;     // HWC index of the first one
    bool done = false;

    // WQ_RX_II (wq_config.h): LOAD_WEIGHTS may write several slices of a word
    // into one weight bank; an INFER's image pays the same II (a batch's images
    // are read by the source stage at II 1).
RxWords:
    while (!done) {
        #pragma HLS PIPELINE II = WQ_RX_II
        WQ_PIPE(RxWords, WQ_RX_II, WQ_DEPTH);
        WQ_RX_STALL(rx);
        axis_word w = rx.read();
        const word_t d = w.data;
        if (n == 0) {
            head = d;
        } else if (n == 1) {
            length = d;
            const unsigned op = head.range(7, 0);
            hdr_ok = head.range(31, 16) == WQ_MAGIC && head.range(15, 8) == WQ_VERSION &&
                     (op == WQ_OP_QUERY || op == WQ_OP_LOAD_WEIGHTS || op == WQ_OP_INFER ||
                      op == WQ_OP_INFER_BATCH);
            writes = hdr_ok && op == WQ_OP_LOAD_WEIGHTS && d == CONFIG_T::blob_words;
            is_infer = hdr_ok && op == WQ_OP_INFER && d == CONFIG_T::infer_words;
            is_batch = hdr_ok && op == WQ_OP_INFER_BATCH;
            // The weight memories change from the next word on: until this load
            // completes with a good checksum they hold no usable model. Cleared
            // here, not at TLAST, so a load cut by an abort (whose TLAST never
            // comes) cannot leave stale "loaded" state behind.
            if (writes) clear_state(st);
        } else if (n == 2) {
            tag = d;
        } else if (!w.last) {
            // A payload word; words past the expected count are only counted.
            const word_t j = n - WQ_HEADER_WORDS;
            if (is_batch && j == 0) {
                word0 = d;
                batch_ok = batch_word_ok<CONFIG_T>(d, length);
            }
            if (writes && j < CONFIG_T::blob_words) MODEL_T::load_word(d, j);
            if (is_infer && j < CONFIG_T::infer_words) {
                const unsigned first = unpack_u8_word<CONFIG_T>(d, j, image);
                if (first < 4 && !bad_code) {
                    bad_code = true;
                    bad_at = j * 4 + first;
                }
            }
        }
        if (w.last) trailer = d;
        else sum += d;
        n++;
        done = w.last == 1 || batch_ok;  // a batch's images go to the Images loop
    }
    bool ended = !batch_ok;  // TLAST is in

    // Inference: one DATAFLOW region an image (MODEL_T::run_images), each
    // image of a batch as soon as its words are in, or the one image of an
    // INFER that has passed every check (its message is whole by now).
    const unsigned packing = word0.range(31, 16);
    const word_t n_img = word0.range(15, 0);
    const bool single = is_infer && n - (WQ_HEADER_WORDS + WQ_TRAILER_WORDS) == length &&
                        sum == trailer && st.weights_loaded && !bad_code;
    const word_t n_run = batch_ok ? n_img : word_t(single ? 1 : 0);
    if (n_run > 0) {
        rx_ctl start, last;
        start.n = n;
        start.sum = sum;
        start.trailer = trailer;
        start.ended = ended;
        start.status = 0;
        MODEL_T::run_images(rx, unsigned(n_run), batch_ok, packing, st.weights_loaded, start, image, results, last);
        n = last.n;
        sum = last.sum;
        trailer = last.trailer;
        ended = last.ended;
    }
    WQ_LAYER(core);
    // A batch's words after its last image (only a message longer than its
    // length field has any), up to TLAST.
RxRest:
    while (!ended) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(RxRest, 1, WQ_DEPTH);
        WQ_RX_STALL(rx);
        axis_word w = rx.read();
        if (w.last) trailer = w.data;
        else sum += w.data;
        n++;
        ended = w.last == 1;
    }

    // Checks in refcore.py's order; the first failure decides the reply.
    const unsigned op = head.range(7, 0);
    if (n < WQ_HEADER_WORDS + WQ_TRAILER_WORDS) {
        send_error<MAXR>(tx, n > 2 ? tag : word_t(0), WQ_ERR_BAD_LENGTH, n);
        return;
    }
    if (head.range(31, 16) != WQ_MAGIC) {
        send_error<MAXR>(tx, tag, WQ_ERR_BAD_MAGIC, head.range(31, 16));
        return;
    }
    if (head.range(15, 8) != WQ_VERSION) {
        send_error<MAXR>(tx, tag, WQ_ERR_BAD_VERSION, head.range(15, 8));
        return;
    }
    word_t need = 0;
    if (op == WQ_OP_LOAD_WEIGHTS) need = CONFIG_T::blob_words;
    else if (op == WQ_OP_INFER) need = CONFIG_T::infer_words;
    else if (op != WQ_OP_QUERY && op != WQ_OP_INFER_BATCH) {
        send_error<MAXR>(tx, tag, WQ_ERR_UNKNOWN_OPCODE, op);
        return;
    }
    // A half-written weight memory must never be used: drop it.
    if (n - (WQ_HEADER_WORDS + WQ_TRAILER_WORDS) != length) {
        if (writes) clear_state(st);
        send_error<MAXR>(tx, tag, WQ_ERR_BAD_LENGTH, n);
        return;
    }
    if (op == WQ_OP_INFER_BATCH) {
        // length == 0 leaves word0 at 0, which would read as n = 0: test it first.
        const bool packing_ok = packing < 32 && ((CONFIG_T::packings >> packing) & 1) != 0;
        if (length == 0) {
            send_error<MAXR>(tx, tag, WQ_ERR_BAD_LENGTH, 0);
            return;
        }
        if (!packing_ok) {
            send_error<MAXR>(tx, tag, WQ_ERR_BAD_PACKING, packing);
            return;
        }
        if (n_img == 0 || n_img > MAXB) {
            send_error<MAXR>(tx, tag, WQ_ERR_BAD_BATCH, n_img);
            return;
        }
        if (!batch_ok) {  // the only check of batch_word_ok left: the length
            send_error<MAXR>(tx, tag, WQ_ERR_BAD_LENGTH, length);
            return;
        }
    } else if (length != need) {
        send_error<MAXR>(tx, tag, WQ_ERR_BAD_LENGTH, length);
        return;
    }
    if (sum != trailer) {
        if (writes) clear_state(st);
        send_error<MAXR>(tx, tag, WQ_ERR_BAD_CHECKSUM, 0);
        return;
    }

    word_t p[MAXR];
    WQ_MEM(p, WQ_BRAM, 0);
    if (op == WQ_OP_QUERY) {
        p[WQ_QUERY_TOPOLOGY_HASH] = CONFIG_T::topology_hash;
        p[WQ_QUERY_CORE_VERSION] = CONFIG_T::core_version;
        p[WQ_QUERY_CAPABILITIES] = CONFIG_T::capabilities;
        p[WQ_QUERY_WEIGHTS_LOADED] = st.weights_loaded ? 1 : 0;
        p[WQ_QUERY_IN_HEIGHT] = CONFIG_T::in_h;
        p[WQ_QUERY_IN_WIDTH] = CONFIG_T::in_w;
        p[WQ_QUERY_IN_CHANNELS] = CONFIG_T::in_c;
        p[WQ_QUERY_N_CLASSES] = CONFIG_T::n_classes;
        p[WQ_QUERY_BLOB_WORDS] = CONFIG_T::blob_words;
        p[WQ_QUERY_WEIGHTS_CHECKSUM] = st.weights_checksum;
        p[WQ_QUERY_PACKINGS] = CONFIG_T::packings;
        p[WQ_QUERY_MAX_BATCH] = CONFIG_T::max_batch;
        send_reply<MAXR>(tx, WQ_OP_QUERY | WQ_REPLY_BIT, tag, p, WQ_QUERY_WORDS);
    } else if (op == WQ_OP_LOAD_WEIGHTS) {
        st.weights_loaded = true;
        st.weights_checksum = sum - head - length - tag;  // payload words only
        p[0] = st.weights_checksum;
        send_reply<MAXR>(tx, WQ_OP_LOAD_WEIGHTS | WQ_REPLY_BIT, tag, p, 1);
    } else if (!st.weights_loaded) {
        send_error<MAXR>(tx, tag, WQ_ERR_NO_WEIGHTS, 0);
    } else if (op == WQ_OP_INFER_BATCH) {
        WQ_LAYER(reply);
        send_records<CONFIG_T::result_words>(tx, WQ_OP_INFER_BATCH | WQ_REPLY_BIT, tag, results,
                                             n_img * CONFIG_T::record_words);
    } else if (bad_code) {
        send_error<MAXR>(tx, tag, WQ_ERR_BAD_INPUT, bad_at);
    } else {
        // The INFER reply is record 0 without its status word.
        WQ_LAYER(reply);
    ReplyResult:
        for (unsigned i = 0; i < CONFIG_T::record_words - 1; i++) {
            #pragma HLS PIPELINE II = 1
            WQ_PIPE(ReplyResult, 1, WQ_DEPTH);
            WQ_AT(p, i) = WQ_AT(results, 1 + i);
        }
        send_reply<MAXR>(tx, WQ_OP_INFER | WQ_REPLY_BIT, tag, p,
                         1 + CONFIG_T::n_classes + CONFIG_T::feature_words);
    }
}

}  // namespace wq

#endif  // WQ_CORE_H
