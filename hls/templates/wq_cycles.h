// wq_cycles.h: hooks of the cycle-accounting C-sim (hls/cycles.py).
//
// Without WQ_CYCLES (Vitis, and the plain g++ C-sim) every hook is empty or
// the bare array access, so synthesis sees exactly the code without them.
// With -DWQ_CYCLES (g++ only, hls/csim_build.py, which also force-includes
// hls/cycles/wq_cycles_sim.h) they count every access of every on-chip array
// against the ports its partitioning gives it, per iteration of each loop:
//   WQ_AT(a, i)             a[i], counted as one access of a's bank
//   WQ_PIPE(Label, II, D)   first statement of a pipelined loop body: one
//                           iteration at the declared II, pipeline depth D
//   WQ_SEQ(Label)           first statement of a loop body that is not
//                           pipelined (and not unrolled)
//   WQ_MEM(a, KIND, F)      after an array's declaration: its ports, as its
//                           ARRAY_PARTITION pragma makes them (KIND: WQ_BRAM,
//                           WQ_REGS complete, WQ_ROWS complete dim=1,
//                           WQ_CYCLIC / WQ_BLOCK with factor F, WQ_ROWS_CYCLIC:
//                           complete dim=1 and cyclic factor F dim=2)
//   WQ_LAYER(name)          the layer (or core part) the next cycles belong to
//   WQ_FIFO(a)              after a channel's WQ_MEM: it is a FIFO (STREAM
//                           pragma), so its stages must access it in order
#ifndef WQ_CYCLES_H
#define WQ_CYCLES_H

#ifdef WQ_CYCLES
#define WQ_AT(a, i) (::wq_cyc::touch(&(a)[i]), (a)[i])
#define WQ_CYC_CAT2(x, y) x##y
#define WQ_CYC_CAT(x, y) WQ_CYC_CAT2(x, y)
#define WQ_PIPE(label, ii, depth) \
    ::wq_cyc::pipe_iter WQ_CYC_CAT(wq_cyc_pipe_, __LINE__)(#label, (ii), (depth))
#define WQ_SEQ(label) ::wq_cyc::seq_iter WQ_CYC_CAT(wq_cyc_seq_, __LINE__)(#label)
#define WQ_MEM(a, kind, factor) \
    ::wq_cyc::mem_guard WQ_CYC_CAT(wq_cyc_mem_, a)(                                             \
        (const void*)(a), sizeof(a), sizeof((a)[0]),                                              \
        sizeof(typename ::wq_cyc::base_elem<decltype(a)>::type), #a, ::wq_cyc::kind, (factor))
#define WQ_LAYER(name) ::wq_cyc::set_layer(#name)
#define WQ_FIFO(a) ::wq_cyc::mark_fifo((const void*)(a))
// Pipeline depths the accounting charges once per loop entry: a MAC loop reads
// its memories, multiplies and sums SIMD products in a tree; the others read,
// compute and write. hls/estimate.py PIPE_DEPTH uses the same figures.
#define WQ_DEPTH 4
#define WQ_DEPTH_MAC(simd) (4 + ::wq_cyc::clog2(simd))
#else
#define WQ_AT(a, i) (a)[i]
#define WQ_PIPE(label, ii, depth)
#define WQ_SEQ(label)
#define WQ_MEM(a, kind, factor)
#define WQ_LAYER(name)
#define WQ_FIFO(a)
#endif

// A channel array of the DATAFLOW region (hls/gen_top.py): local for synthesis
// (UG1399's canonical form; the tool makes it a ping-pong buffer), static in
// any C simulation so that a large model's activations stay off the stack of
// the thread that calls the core.
#ifdef __SYNTHESIS__
#define WQ_PIPO
#else
#define WQ_PIPO static
#endif

#endif  // WQ_CYCLES_H
