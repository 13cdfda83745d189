// A tiny kernel for tests/test_hls_cycles.py: one II=1 loop that reads four
// elements of one array each iteration. Unpartitioned (a 2-port BRAM) it needs
// II 2, which the cycle accounting must flag; partitioned cyclic by 2 (4 ports)
// or completely (registers) it must pass. PART selects the partitioning.
#include "ap_int.h"
#include "wq_cycles.h"

#ifndef PART
#define PART 0
#endif

static ap_uint<8> data[64];

int kernel_sum() {
#if PART == 1
    #pragma HLS ARRAY_PARTITION variable=data cyclic factor=2
    WQ_MEM(data, WQ_CYCLIC, 2);
#elif PART == 2
    #pragma HLS ARRAY_PARTITION variable=data complete
    WQ_MEM(data, WQ_REGS, 0);
#else
    WQ_MEM(data, WQ_BRAM, 0);
#endif
    WQ_LAYER(fixture);
    int sum = 0;
Quads:
    for (unsigned i = 0; i < 16; i++) {
        #pragma HLS PIPELINE II = 1
        WQ_PIPE(Quads, 1, 3);
        sum += WQ_AT(data, 4 * i) + WQ_AT(data, 4 * i + 1) + WQ_AT(data, 4 * i + 2) + WQ_AT(data, 4 * i + 3);
    }
    return sum;
}

int main() {
    WQ_MEM(data, WQ_BRAM, 0);  // replaced by kernel_sum's own registration
    for (unsigned i = 0; i < 64; i++) data[i] = i;
#ifdef WQ_CYCLES
    wq_cyc::begin_message();
#endif
    const int s = kernel_sum();
#ifdef WQ_CYCLES
    std::printf("%d\n%s\n", s, wq_cyc::report_json().c_str());
#else
    std::printf("%d\n{}\n", s);
#endif
    return 0;
}
