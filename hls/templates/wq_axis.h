// wq_axis.h: the 32-bit AXI4-Stream beat of the top's rx and tx ports.
//
// Vitis HLS makes TLAST/TKEEP/TSTRB side-channel signals only from the members
// of hls::axis / ap_axiu (UG1399, "AXI4-Stream Interfaces with Side-Channels");
// a struct of our own would be packed into a wider TDATA, with `last` as a
// data bit that the 32-bit FIFO never drives. So the top uses
// hls::axis<ap_uint<32>, 0, 0, 0> (= ap_axiu<32, 0, 0, 0>): TDATA, TKEEP,
// TSTRB, TLAST, no TUSER/TID/TDEST.
//
// With Vitis, its own ap_axi_sdata.h provides the type. hls4ml's ap_types
// folder (what the g++ C-sim compiles against) ships no ap_axi_sdata.h, so
// there a compatible stand-in below provides the same members under the same
// names. It is for C simulation only; synthesis always sees Vitis' header.
#ifndef WQ_AXIS_H
#define WQ_AXIS_H

#include <cstddef>
#include "ap_int.h"

#if defined(__has_include)
#if __has_include(<ap_axi_sdata.h>)
#include <ap_axi_sdata.h>
#define WQ_VITIS_AXI_SDATA 1
#endif
#endif

#ifndef WQ_VITIS_AXI_SDATA
// Stand-in for Vitis' hls::axis: only the side-channel-free form the core uses
// is defined, so any other use fails to compile instead of differing.
namespace hls {
template <typename T, std::size_t WUser, std::size_t WId, std::size_t WDest>
struct axis;

template <int W>
struct axis<ap_uint<W>, 0, 0, 0> {
    ap_uint<W> data;
    ap_uint<(W + 7) / 8> keep;
    ap_uint<(W + 7) / 8> strb;
    ap_uint<1> last;
};
}  // namespace hls

template <std::size_t WData, std::size_t WUser, std::size_t WId, std::size_t WDest>
using ap_axiu = hls::axis<ap_uint<WData>, WUser, WId, WDest>;
#endif

namespace wq {

// One beat of rx/tx. Every beat the core writes has all bytes valid (TKEEP,
// TSTRB all ones); TLAST marks the last word of a reply.
typedef hls::axis<ap_uint<32>, 0, 0, 0> axis_word;

// A beat with every byte valid.
inline axis_word axis_beat(ap_uint<32> data, bool last) {
    #pragma HLS INLINE
    axis_word w;
    w.data = data;
    w.keep = -1;
    w.strb = -1;
    w.last = last ? 1 : 0;
    return w;
}

}  // namespace wq

#endif  // WQ_AXIS_H
