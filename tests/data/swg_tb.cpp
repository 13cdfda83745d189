// Test bench of hls/templates/wq_swg.h for tests/test_hls_swg.py: the layer
// geometry comes in -D flags; input codes (HWC) on stdin, one a line; every
// window code on stdout, one a line; with -DWQ_CYCLES then the accounting JSON.
#include <cstdio>
#include "wq_swg.h"

struct cfg : wq::swg_config {
    static const unsigned in_h = SWG_H, in_w = SWG_W, in_c = SWG_C, kernel = SWG_K, stride = SWG_S, pad = SWG_P;
    static const unsigned out_h = (SWG_H + 2 * SWG_P - SWG_K) / SWG_S + 1;
    static const unsigned out_w = (SWG_W + 2 * SWG_P - SWG_K) / SWG_S + 1;
    static const unsigned simd = SWG_SIMD, data_bits = 8;
    typedef ap_uint<8 * SWG_SIMD> word_t;
};

int main() {
    hls::stream<cfg::data_t> in("in");
    hls::stream<cfg::word_t> out("out");
    for (unsigned i = 0; i < cfg::in_h * cfg::in_w * cfg::in_c; i++) {
        unsigned v;
        if (std::scanf("%u", &v) != 1) return 2;
        in.write(v);
    }
#ifdef WQ_CYCLES
    wq_cyc::begin_message();
    WQ_LAYER(swg);
#endif
    wq::sliding_window<cfg>(in, out);
    if (!in.empty()) return 3;  // every input code is read exactly once
    while (!out.empty()) {  // one code a line, lane 0 first
        const cfg::word_t w = out.read();
        for (unsigned s = 0; s < SWG_SIMD; s++) std::printf("%u\n", (unsigned)w.range(8 * s + 7, 8 * s));
    }
#ifdef WQ_CYCLES
    std::printf("%s\n", wq_cyc::report_json().c_str());
#endif
    return 0;
}
