// wq_cycles_report.h: the cycle-accounting C-sim's report, the last message's
// counts as JSON for hls/cycles.py. Included by wq_cycles_sim.h, whose header
// states what is counted; g++ -DWQ_CYCLES only, like it.
#ifndef WQ_CYCLES_REPORT_H
#define WQ_CYCLES_REPORT_H

namespace wq_cyc {

inline void append(std::string& out, const char* fmt, unsigned long long a) {
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, a);
    out += buf;
}

// The last message's accounting as JSON.
inline std::string report_json() {
    state& s = S();
    std::string out = "{\"layers\": [";
    unsigned long long total = 0;
    for (size_t li = 0; li < s.layer_order.size(); li++) {
        const std::string& name = s.layer_order[li];
        unsigned long long lc = 0;
        std::string loops;
        for (std::map<std::pair<std::string, std::string>, loop_stat>::iterator it = s.loops.begin();
             it != s.loops.end(); ++it) {
            const loop_stat& l = it->second;
            if (l.layer != name || l.iters == 0) continue;
            const unsigned long long c = loop_cycles(l);
            // Inner loops' cycles are counted by the loops themselves; a seq loop's
            // own figure is its control and straight-line accesses only.
            lc += c;
            if (!loops.empty()) loops += ", ";
            loops += "{\"loop\": \"" + l.label + "\", \"pipelined\": " + (l.pipelined ? "true" : "false");
            append(loops, ", \"iterations\": %llu", l.iters);
            append(loops, ", \"entries\": %llu", l.entries);
            append(loops, ", \"ii_declared\": %llu", l.ii_decl);
            append(loops, ", \"ii\": %llu", l.pipelined ? (l.ii_need > l.ii_decl ? l.ii_need : l.ii_decl) : 0);
            append(loops, ", \"depth\": %llu", l.pipelined ? l.depth : 0);
            append(loops, ", \"cycles\": %llu}", c);
        }
        std::map<std::string, accesses>::iterator lo = s.loose.find(name);
        unsigned long long straight = 0;
        if (lo != s.loose.end()) {
            int worst;
            straight = need(lo->second, &worst);
        }
        lc += straight;
        total += lc;
        if (li) out += ", ";
        out += "{\"name\": \"" + name + "\"";
        append(out, ", \"cycles\": %llu", lc);
        append(out, ", \"straight_line_cycles\": %llu", straight);
        out += ", \"loops\": [" + loops + "]}";
    }
    out += "], \"violations\": [";
    for (size_t i = 0; i < s.violations.size(); i++) {
        const violation& v = s.violations[i];
        if (i) out += ", ";
        out += "{\"layer\": \"" + v.layer + "\", \"loop\": \"" + v.loop + "\", \"array\": \"" + v.mem + "\"";
        append(out, ", \"accesses\": %llu", v.accesses);
        append(out, ", \"ports\": %llu", v.ports);
        append(out, ", \"ii_declared\": %llu", v.ii_decl);
        append(out, ", \"ii_needed\": %llu}", v.ii_need);
    }
    out += "], \"fifo_errors\": [";
    for (std::map<const char*, memory>::iterator it = s.mems.begin(); it != s.mems.end(); ++it)
        fifo_done(it->second);
    for (size_t i = 0; i < s.fifo_errors.size(); i++) out += (i ? ", \"" : "\"") + s.fifo_errors[i] + "\"";
    append(out, "], \"cycles\": %llu}", total);
    return out;
}

}  // namespace wq_cyc
#endif  // WQ_CYCLES_REPORT_H
