"""The PL side of the waferq block design as register-level models, wired as
zybo_z7/vivado/block_design.tcl wires it:

    DDR -> axi_dma_0 MM2S -> rx_fifo -> waferq_top_0 -> (wq_glue_0 guard) -> tx_fifo -> S2MM -> DDR

- ``ApCtrlHs``: the Vitis HLS ``s_axi_control`` block of an ``ap_ctrl_hs`` core (UG1399,
  "Interface synthesis / s_axilite control"): AP_CTRL bit 0 ap_start, 1 ap_done (clear on
  read), 2 ap_idle, 3 ap_ready (clear on read), 7 auto_restart; GIE/IER/ISR at 0x04/0x08/0x0C.
  The core takes words only while started; each TLAST-ended request is answered by
  ``answer`` (the C-simulated core, or the reference core), one reply with TLAST on its
  last word. ap_rst_n (the CSR soft reset) clears AP_CTRL to ap_idle and drops a request
  in flight.
- ``GlueCsr``: the wq_glue_0 CSR block as far as the backend uses it: CONTROL.SOFT_RESET
  pulses the core's ap_rst_n. Other offsets are a plain register file. Of the frame guard
  (its RTL has its own tests) only the RESET close is modelled, as wq_frame_guard.v's
  header describes it: a soft reset while a reply is open appends one ERROR reply
  (code ERR_GUARD_RESET, detail = words passed, tag = the cut reply's if it passed) with
  TLAST. Replies otherwise pass straight through.
- The FIFOs are unbounded deques: back-pressure is not modelled.

``Fabric.run`` moves data until nothing moves; the device calls it after every register
write, so a transfer finishes inside the write that lets it, in a fixed order.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from protocol import stream as S
from zybo_z7 import csr_map

AP_START, AP_DONE, AP_IDLE, AP_READY, AUTO_RESTART = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 7


class ApCtrlHs:
    def __init__(self, answer):
        self.answer = answer  # request words (np.uint32) -> reply words
        self.rx, self.tx = None, None  # set by the fabric
        self.requests: list[np.ndarray] = []
        self.reset_count = 0
        self.hang_next = False  # the next request is taken and never answered (until reset)
        self.hang_after = None  # or: the next reply stops after this many words (until reset)
        self._reset()

    def _reset(self) -> None:
        self.start = self.auto_restart = False
        self.done = self.ready = False
        self.hung = False
        self.open_reply: list[int] = []  # words of a reply cut short (no TLAST yet)
        self.frame: list[int] = []
        self.gie = self.ier = self.isr = 0

    def ap_rst(self) -> None:
        self.reset_count += 1
        self._reset()

    @property
    def idle(self) -> bool:
        return not self.start and not self.frame and not self.hung

    def read(self, off: int) -> int:
        if off == 0x00:
            value = (AP_START * self.start | AP_DONE * self.done | AP_IDLE * self.idle
                     | AP_READY * self.ready | AUTO_RESTART * self.auto_restart)
            self.done = self.ready = False  # clear on read
            return value
        return {0x04: self.gie, 0x08: self.ier, 0x0C: self.isr}.get(off, 0)

    def write(self, off: int, value: int) -> None:
        if off == 0x00:
            self.auto_restart = bool(value & AUTO_RESTART)
            if value & AP_START:
                self.start = True
        elif off == 0x04:
            self.gie = value & 1
        elif off == 0x08:
            self.ier = value & 3
        elif off == 0x0C:
            self.isr ^= value & 3  # toggle on write

    def step(self) -> bool:
        moved = False
        while self.start and not self.hung and self.rx:
            word, last = self.rx.popleft()
            self.frame.append(word)
            moved = True
            if not last:
                continue
            request, self.frame = np.array(self.frame, dtype=np.uint32), []
            self.requests.append(request)
            if self.hang_next:
                self.hang_next, self.hung = False, True
                return True
            reply = np.asarray(self.answer(request), dtype=np.uint32)
            if self.hang_after is not None:
                reply, self.hang_after, self.hung = reply[:self.hang_after], None, True
                self.open_reply = [int(w) for w in reply]
                self.tx.extend((w, False) for w in self.open_reply)
                return True
            for i, w in enumerate(reply):
                self.tx.append((int(w), i == reply.size - 1))
            self.done = self.ready = True
            self.isr |= 1
            if not self.auto_restart:
                self.start = False
        return moved


class GlueCsr:
    CONTROL = csr_map.BY_NAME["CONTROL"]
    SOFT_RESET = next(f for f in CONTROL.fields if f.name == "SOFT_RESET").mask

    def __init__(self, core: ApCtrlHs):
        self.core = core
        self.regs: dict[int, int] = {}
        self.soft_resets = 0
        self.reset_closes = 0

    def read(self, off: int) -> int:
        return self.regs.get(off, 0)

    def write(self, off: int, value: int) -> None:
        if off == self.CONTROL.offset:
            if value & self.SOFT_RESET:
                self.soft_resets += 1
                cut = self.core.open_reply
                if cut:  # the guard closes the open reply
                    tag = cut[2] if len(cut) >= 3 else 0
                    tail = S.encode(S.OP_ERROR, [S.ERR_GUARD_RESET, len(cut)], tag)
                    self.core.tx.extend((int(w), i == tail.size - 1) for i, w in enumerate(tail))
                    self.reset_closes += 1
                self.core.ap_rst()
            return  # command bits self-clear
        self.regs[off] = value


class Fabric:
    def __init__(self, ddr, dma, core: ApCtrlHs):
        self.ddr, self.dma, self.core = ddr, dma, core
        self.csr = GlueCsr(core)
        self.rx_fifo: deque = deque()
        self.tx_fifo: deque = deque()
        dma.mm2s_out = lambda word, last: self.rx_fifo.append((word, last))
        dma.s2mm_in = self.tx_fifo
        core.rx, core.tx = self.rx_fifo, self.tx_fifo

    def run(self) -> None:
        for _ in range(10_000):
            if not (self.dma.mm2s.step() | self.core.step() | self.dma.s2mm.step()):
                return
        raise RuntimeError("the fabric model did not settle")
