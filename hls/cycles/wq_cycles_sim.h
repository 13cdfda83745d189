// wq_cycles_sim.h: the cycle-accounting C-sim (hls/cycles.py). g++ only:
// force-included (-include) with -DWQ_CYCLES by hls/csim_build.py; Vitis never
// sees it, and the synthesized sources only hold the hooks of wq_cycles.h.
//
// Model (what is counted, stated once):
// - Memories. Every on-chip array is registered with the ports its partitioning
//   gives it: a BRAM bank has 2 ports (read or write; UG1399 "Array Accesses
//   and Performance", UG1448 HLS 200-448: four stores to a dual-port memory
//   give "Lower bound of II is 2"), a
//   completely partitioned array is registers (no port limit), complete dim=1
//   makes one 2-port bank per row, cyclic/block factor F makes F 2-port banks
//   (WQ_ROWS_CYCLIC: complete dim=1 and cyclic factor F dim=2, rows * F banks).
//   An access to an address no registered array holds aborts the run, so no
//   array escapes the count.
// - Pipelined loops (WQ_PIPE). One iteration costs II cycles. An iteration
//   that touches n distinct addresses of a bank needs ceil(n / ports) cycles
//   (two reads of one address in one iteration are one port access: the
//   scheduler shares them); the loop's
//   achieved II is the largest need over the run (a static schedule serves the
//   worst iteration) and at least the declared II. A need above the declared II
//   is a port over-subscription: recorded with the layer, loop and array. One
//   execution of the loop (entered afresh) costs (trips - 1) * II + depth.
// - Loops that are not pipelined (WQ_SEQ). One iteration costs 1 cycle of loop
//   control plus its own straight-line memory accesses, max over banks of
//   ceil(n / ports), plus whatever its inner loops cost.
// - Unrolled loops cost nothing of their own; their accesses land in the
//   enclosing iteration.
// - Cycles are counted per layer (WQ_LAYER): the region's stages (source,
//   layers, dup2 copies, sink) and the message around it (core, reply).
//   Combining them is hls/cycles.py's: the region's interval is its slowest
//   stage, an image's latency their sum.
// - FIFO channels (WQ_FIFO): a channel array the generator makes a FIFO must be
//   written wholly by one stage and read wholly by one later stage, each bank
//   in index order; anything else is listed in fifo_errors.
// - Limit: only accesses that happen are counted. The HLS scheduler plans for
//   every access an iteration may make; a conditional access that never fires
//   together with the others in the run (the loader's last slice of a word, a
//   window read that only padding skips) is not seen, so an II here can be
//   below the tool's (wq_loader.h's LoadSlices: up to 32/CHUNK + 1 stores a
//   word where at most 32/CHUNK happen at once).
#ifndef WQ_CYCLES_SIM_H
#define WQ_CYCLES_SIM_H
#ifdef __cplusplus
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace wq_cyc {

enum kind_t { WQ_BRAM, WQ_REGS, WQ_ROWS, WQ_CYCLIC, WQ_BLOCK, WQ_ROWS_CYCLIC };

// The element type under every array dimension (sizes the banks of a cyclic partition).
template <class T> struct base_elem { typedef T type; };
template <class T, size_t N> struct base_elem<T[N]> { typedef typename base_elem<T>::type type; };

struct memory {
    std::string name;
    const char* base;
    size_t bytes, unit;     // unit: sizeof(a[0]) (a row of a 2-D array, an element of a 1-D one)
    size_t elem;            // sizeof one element under every dimension
    kind_t kind;
    unsigned factor;
    int first_bank;         // global id of bank 0
    // A FIFO channel of the DATAFLOW region (WQ_FIFO): the stages that touch it,
    // in order, and per bank the next element each must touch.
    bool fifo = false;
    std::vector<std::string> users;
    std::vector<size_t> next, last;
    unsigned banks() const {
        if (kind == WQ_ROWS) return unsigned(bytes / unit);
        if (kind == WQ_ROWS_CYCLIC) return unsigned(bytes / unit) * factor;
        if (kind == WQ_CYCLIC || kind == WQ_BLOCK) return factor;
        return 1;
    }
    unsigned bank_of(const char* p) const {
        const size_t off = size_t(p - base);
        const size_t elems = bytes / elem;
        if (kind == WQ_ROWS) return unsigned(off / unit);
        if (kind == WQ_ROWS_CYCLIC) return unsigned(off / unit) * factor + unsigned((off % unit) / elem % factor);
        if (kind == WQ_CYCLIC) return unsigned((off / elem) % factor);
        if (kind == WQ_BLOCK) return unsigned((off / elem) / ((elems + factor - 1) / factor));
        return 0;
    }
};

struct bank_info { std::string mem; unsigned ports; };   // ports 0: registers

struct loop_stat {
    std::string layer, label;
    bool pipelined = false;
    unsigned ii_decl = 1, depth = 1, ii_need = 1;   // ii_need: max over the run
    unsigned long long iters = 0, entries = 0, seq_cycles = 0;   // this message
    unsigned long long last_close = 0;
};

struct violation { std::string layer, loop, mem; unsigned accesses, ports, ii_decl, ii_need; };

struct ctx {
    loop_stat* loop;
    std::vector<std::pair<int, const char*> > counts;  // (bank id, address), one an access
};

struct state {
    std::map<const char*, memory> mems;          // by base address
    std::vector<bank_info> banks;
    std::map<std::pair<std::string, std::string>, loop_stat> loops;
    std::vector<std::string> layer_order;
    std::map<std::string, std::vector<std::pair<int, const char*> > > loose;  // accesses outside loops
    std::vector<ctx> stack;
    std::vector<violation> violations;
    std::vector<std::string> fifo_errors;   // FIFO channels touched out of order or not wholly
    std::string layer = "core";
    unsigned long long stamp = 0;
};

inline state& S() {
    static state s;
    return s;
}

inline unsigned clog2(unsigned n) {
    unsigned b = 0;
    while ((1u << b) < n) b++;
    return b;
}

inline void set_layer(const char* name) {
    state& s = S();
    s.layer = name;
    for (size_t i = 0; i < s.layer_order.size(); i++)
        if (s.layer_order[i] == s.layer) return;
    s.layer_order.push_back(s.layer);
}

inline void fail(const std::string& what) {
    std::fprintf(stderr, "wq_cycles: %s\n", what.c_str());
    std::abort();
}

// The first misuse of each channel only: one wrong access order repeats itself.
inline void fifo_error(const std::string& what) {
    std::vector<std::string>& e = S().fifo_errors;
    const std::string key = what.substr(0, what.find(':') + 1);
    for (size_t i = 0; i < e.size(); i++)
        if (e[i].compare(0, key.size(), key) == 0) return;
    e.push_back(what);
}

// A FIFO channel is whole once one stage wrote every element and one read
// every element, each bank in order (UG1399: an array channel becomes a FIFO
// only when both sides access it sequentially, every element once).
// The stage that touched m last reached every element of every bank.
inline void fifo_check_whole(const memory& m) {
    for (size_t b = 0; b < m.next.size(); b++)
        if (m.next[b] < m.bytes / m.elem) {
            fifo_error("FIFO channel " + m.name + ": stage " + m.users.back() + " leaves elements untouched");
            return;
        }
}

inline void fifo_done(memory& m) {
    if (!m.fifo || m.users.empty()) return;
    if (m.users.size() != 2) fifo_error("FIFO channel " + m.name + ": touched by one stage only (" + m.users[0] + ")");
    fifo_check_whole(m);
    m.users.clear();
}

inline void fifo_touch(memory& m, size_t e) {
    state& s = S();
    const unsigned f = m.kind == WQ_CYCLIC ? m.factor : 1;
    if (m.users.empty() || m.users.back() != s.layer) {
        if (!m.users.empty()) fifo_check_whole(m);
        if (m.users.size() == 2) {
            fifo_error("FIFO channel " + m.name + ": a third stage, " + s.layer + ", touches it");
            return;
        }
        m.users.push_back(s.layer);
        m.next.assign(f, 0);
        m.last.assign(f, size_t(-1));
        for (unsigned b = 0; b < f; b++) m.next[b] = b;
    }
    const size_t b = e % f;
    if (e == m.last[b]) return;   // the same element again in one stage: one FIFO access
    if (e != m.next[b]) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "element %zu, bank %zu expects %zu", e, b, m.next[b]);
        fifo_error("FIFO channel " + m.name + ": stage " + s.layer + " out of order, " + buf);
        return;
    }
    m.last[b] = e;
    m.next[b] = e + f;
}

// WQ_FIFO(a): a, registered just before, is a FIFO channel.
inline void mark_fifo(const void* a) {
    std::map<const char*, memory>::iterator it = S().mems.find((const char*)a);
    if (it == S().mems.end()) fail("WQ_FIFO on an array that is not registered (WQ_MEM)");
    it->second.fifo = true;
    it->second.users.clear();
}

struct mem_guard {
    const char* base;
    mem_guard(const void* b, size_t bytes, size_t unit, size_t elem, const char* name, kind_t kind,
              unsigned factor)
        : base((const char*)b) {
        state& s = S();
        // Drop registrations this array overlaps (a dead stack array's, or its own:
        // a channel is registered again for each image, after its FIFO check).
        for (std::map<const char*, memory>::iterator it = s.mems.begin(); it != s.mems.end();) {
            if (it->first < base + bytes && base < it->first + it->second.bytes) {
                fifo_done(it->second);
                s.mems.erase(it++);
            } else {
                ++it;
            }
        }
        memory m;
        m.name = name; m.base = base; m.bytes = bytes; m.unit = unit; m.elem = elem; m.kind = kind;
        m.factor = factor ? factor : 1;
        m.first_bank = int(s.banks.size());
        for (unsigned k = 0; k < m.banks(); k++) {
            bank_info bi;
            bi.mem = name;
            bi.ports = kind == WQ_REGS ? 0 : 2;
            s.banks.push_back(bi);
        }
        s.mems[base] = m;
    }
    ~mem_guard() {}  // statics stay registered; a stack array is replaced when its space is reused
};

typedef std::vector<std::pair<int, const char*> > accesses;

// Distinct addresses per bank: (bank id, count), from the raw accesses.
inline std::vector<std::pair<int, unsigned> > per_bank(accesses v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    std::vector<std::pair<int, unsigned> > out;
    for (size_t i = 0; i < v.size(); i++) {
        if (out.empty() || out.back().first != v[i].first) out.push_back(std::make_pair(v[i].first, 0u));
        out.back().second++;
    }
    return out;
}

inline void touch(const void* p) {
    state& s = S();
    const char* c = (const char*)p;
    std::map<const char*, memory>::iterator it = s.mems.upper_bound(c);
    if (it == s.mems.begin()) fail("an access to an array that is not registered (WQ_MEM)");
    --it;
    memory& m = it->second;
    if (c >= m.base + m.bytes) fail("an access to an array that is not registered (WQ_MEM), past " + m.name);
    if (m.fifo) fifo_touch(m, size_t(c - m.base) / m.elem);
    const int bank = m.first_bank + int(m.bank_of(c));
    if (s.banks[bank].ports == 0) return;  // registers
    if (s.stack.empty()) s.loose[s.layer].push_back(std::make_pair(bank, c));
    else s.stack.back().counts.push_back(std::make_pair(bank, c));
}

inline loop_stat& loop_of(const char* label, bool pipelined) {
    state& s = S();
    loop_stat& l = s.loops[std::make_pair(s.layer, std::string(label))];
    l.layer = s.layer;
    l.label = label;
    l.pipelined = pipelined;
    return l;
}

// Max over banks of ceil(accesses / ports), and which bank.
inline unsigned need(const accesses& raw, int* worst, unsigned* n_worst = 0) {
    const std::vector<std::pair<int, unsigned> > v = per_bank(raw);
    unsigned n = 0;
    *worst = -1;
    for (size_t i = 0; i < v.size(); i++) {
        const unsigned ports = S().banks[v[i].first].ports;
        const unsigned c = (v[i].second + ports - 1) / ports;
        if (c > n) {
            n = c;
            *worst = v[i].first;
            if (n_worst) *n_worst = v[i].second;
        }
    }
    return n;
}

struct pipe_iter {
    loop_stat* l;
    pipe_iter(const char* label, unsigned ii, unsigned depth) {
        state& s = S();
        l = &loop_of(label, true);
        l->ii_decl = ii;
        l->depth = depth;
        if (l->last_close != s.stamp || l->iters == 0) l->entries++;
        ctx c;
        c.loop = l;
        s.stack.push_back(c);
        l->iters++;
    }
    ~pipe_iter() {
        state& s = S();
        int worst;
        unsigned acc = 0;
        const unsigned n = need(s.stack.back().counts, &worst, &acc);
        if (n > l->ii_need) l->ii_need = n;
        if (n > l->ii_decl) {
            const bank_info& b = s.banks[worst];
            bool seen = false;
            for (size_t i = 0; i < s.violations.size(); i++) {
                violation& v = s.violations[i];
                if (v.layer == l->layer && v.loop == l->label && v.mem == b.mem) {
                    seen = true;
                    if (n > v.ii_need) { v.ii_need = n; v.accesses = acc; }
                }
            }
            if (!seen) {
                violation v = {l->layer, l->label, b.mem, acc, b.ports, l->ii_decl, n};
                s.violations.push_back(v);
            }
        }
        s.stack.pop_back();
        l->last_close = ++s.stamp;
    }
};

struct seq_iter {
    loop_stat* l;
    explicit seq_iter(const char* label) {
        state& s = S();
        ++s.stamp;
        l = &loop_of(label, false);
        l->iters++;
        ctx c;
        c.loop = l;
        s.stack.push_back(c);
    }
    ~seq_iter() {
        state& s = S();
        int worst;
        l->seq_cycles += 1 + need(s.stack.back().counts, &worst);
        s.stack.pop_back();
        ++s.stamp;
    }
};

// Cycles of one loop in this message, at the II the run achieved.
inline unsigned long long loop_cycles(const loop_stat& l) {
    if (!l.pipelined) return l.seq_cycles;
    const unsigned ii = l.ii_need > l.ii_decl ? l.ii_need : l.ii_decl;
    const unsigned long long depth = l.depth > ii ? l.depth : ii;
    return l.iters * ii + l.entries * (depth - ii);
}

// Starts a message: per-message counts to zero; achieved IIs and violations stay.
inline void begin_message() {
    state& s = S();
    for (std::map<std::pair<std::string, std::string>, loop_stat>::iterator it = s.loops.begin();
         it != s.loops.end(); ++it)
        it->second.iters = it->second.entries = it->second.seq_cycles = 0;
    s.loose.clear();
    s.layer_order.clear();
    s.layer = "core";
    s.layer_order.push_back("core");
}

}  // namespace wq_cyc

#include "wq_cycles_report.h"
#endif
#endif  // WQ_CYCLES_SIM_H
