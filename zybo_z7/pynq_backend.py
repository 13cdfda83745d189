"""The accelerator through PYNQ on the board: pynq.Overlay + the AXI DMA in user space.

    backend = PynqBackend("/home/xilinx/waferq/waferq.bit")   # waferq.hwh next to it
    reply = backend.transact(request_words)

An alternative to the ``chardev`` backend for a PYNQ image, which ships no waferq
driver: PYNQ maps the DMA's registers and allocates contiguous buffers itself. Words are
uint32, little-endian as the DMA moves them; one request gives one reply (TLAST ends it).

DMA modes. The block design builds the AXI DMA with scatter-gather (the PetaLinux image's
xilinx_dma driver needs it), and the PYNQ image uses the same bitstream:

- send: pynq's own channel (``sendchannel.transfer``; it splits the buffer into at least
  two descriptors, the last one with TXEOF, so the core sees TLAST on the last word);
- receive, SG build: this backend arms S2MM itself with ONE descriptor covering the whole
  receive buffer (CURDESC = TAILDESC), because pynq's ``_SGDMAChannel`` splits the buffer
  into two or more descriptors and counts a receive done only when the last of them
  completes: a reply that ends (TLAST) inside the first leaves the rest queued and the
  channel never goes idle. The reply length is the descriptor's status word (PG021
  "S2MM_STATUS": transferred bytes, RXEOF, error bits, Cmplt);
- receive, simple (direct-register) build: pynq's ``_SDMAChannel``, which ends on TLAST and
  reads S2MM_LENGTH.

pynq's ``wait()`` spins without a deadline, so this backend polls DMASR with one and calls
``wait()`` only once a channel is idle. pynq's ``transfer`` flushes the send buffer and
its ``wait`` invalidates the receive buffer; the backend's own SG receive invalidates the
descriptor and the buffer itself. Any failure resets the DMA and the core, and drains
what an aborted reply left in the TX FIFO, before the exception leaves ``transact``, so
the next call starts clean.

Two gaps of pynq 4.0.0 on a Zynq-7000 are closed before the download (see the functions
at the end): pynqmetadata 0.2.0 finds no PL clock rate in a PS7 .hwh, and pynq's clock
code assumes the 50 MHz PS clock of the PYNQ-Z1/Z2 (the Zybo Z7's is 33.333 MHz).

tests/test_pynq_backend*.py run this against pynq's own code over register-level models
of the PL (tests/pynq_sim); nothing of it has run on a board.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from protocol import stream as S
from contract import board as board_facts
from zybo_z7 import csr_map

# Block-design cell names (zybo_z7/vivado/block_design.tcl): PYNQ names the overlay's IPs so.
DMA_CELL, CORE_CELL, CSR_CELL = "axi_dma_0", "waferq_top_0", "wq_glue_0"
DMA_VLNV = "xilinx.com:ip:axi_dma:7.1"

# AXI DMA register offsets (PG021): the S2MM registers sit 0x30 above the MM2S ones.
MM2S_DMACR, MM2S_DMASR, S2MM_DMACR, S2MM_DMASR = 0x00, 0x04, 0x30, 0x34
S2MM_CURDESC, S2MM_CURDESC_MSB, S2MM_TAILDESC, S2MM_TAILDESC_MSB = 0x38, 0x3C, 0x40, 0x44
DMACR_RS, DMACR_RESET = 1 << 0, 1 << 2  # run/stop; soft-reset of both channels
DMASR_HALTED, DMASR_IDLE = 1 << 0, 1 << 1

# SG descriptor (PG021 "Scatter Gather Descriptor"): 16 words, 64-byte aligned.
DESC_WORDS, DESC_NXTDESC, DESC_BUFFER, DESC_CONTROL, DESC_STATUS = 16, 0, 2, 6, 7
DESC_RXEOF, DESC_INT_ERR, DESC_SLV_ERR, DESC_DEC_ERR, DESC_CMPLT = (
    1 << 26, 1 << 28, 1 << 29, 1 << 30, 1 << 31)
DESC_ERRORS = {DESC_INT_ERR: "DMAIntErr", DESC_SLV_ERR: "DMASlvErr", DESC_DEC_ERR: "DMADecErr"}

# DMASR bits (PG021 tables 2-9 and 2-17): bit -> (name, what it means when set).
DMASR_BITS = {
    0: ("Halted", "the channel is halted"),
    1: ("Idle", "the channel is idle"),
    3: ("SGIncld", "scatter-gather is included"),
    4: ("DMAIntErr", "DMA internal error (a zero-length transfer or a bad descriptor length)"),
    5: ("DMASlvErr", "DMA slave error (memory could not be accessed)"),
    6: ("DMADecErr", "DMA decode error (invalid buffer address)"),
    8: ("SGIntErr", "scatter-gather internal error (a completed descriptor was reused)"),
    9: ("SGSlvErr", "scatter-gather slave error (descriptor memory could not be accessed)"),
    10: ("SGDecErr", "scatter-gather decode error (invalid descriptor address)"),
    12: ("IOC_Irq", "interrupt on complete"),
    13: ("Dly_Irq", "interrupt on delay"),
    14: ("Err_Irq", "interrupt on error"),
}
DMASR_ERRORS = sum(1 << b for b, (n, _) in DMASR_BITS.items() if n.endswith("Err"))

# Vitis HLS ap_ctrl_hs block (s_axi_control): AP_CTRL at offset 0.
AP_CTRL = 0x00
AP_START, AP_DONE, AP_IDLE, AP_READY, AUTO_RESTART = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 7

POLL_S = 50e-6
MIN_REQUEST_WORDS = S.HEADER_WORDS + S.TRAILER_WORDS  # the shortest well-formed message
REG_WAIT_S = 0.1  # a reset or a run/stop takes effect within cycles; this is a hang guard
# After an abort: the stale frames are already in the TX FIFO (module doc of _drain), so a
# drain receive that stays empty this long has found them all.
DRAIN_S, DRAIN_FRAMES = 0.02, 4
NOT_INSTALLED = "pynq is not installed: the PYNQ backend runs on a PYNQ image on the board"


def decode_dmasr(value: int) -> str:
    """DMASR as text: the names of the set bits, then what each error bit means."""
    names = [DMASR_BITS[b][0] for b in sorted(DMASR_BITS) if value >> b & 1]
    errors = [DMASR_BITS[b][1] for b in sorted(DMASR_BITS) if value >> b & 1 and DMASR_ERRORS >> b & 1]
    text = f"DMASR 0x{value:08x} [{', '.join(names) or 'running'}]"
    return text + (": " + "; ".join(errors) if errors else "")


class PynqBackend:
    name = "pynq"

    def __init__(self, bitstream, timeout: float = 5.0, download: bool = True):
        try:
            import pynq
        except ImportError:
            raise RuntimeError(NOT_INSTALLED) from None
        self._pynq, self.timeout = pynq, timeout
        self.rx_buf = self.rx_desc = None
        self.drained = 0  # stale frames the last abort discarded
        bit = Path(bitstream)
        if not bit.is_file():
            raise FileNotFoundError(f"no bitstream at {bit}: copy waferq.bit and waferq.hwh from "
                                    "build/<model>/bitstream to the board")
        if not bit.with_suffix(".hwh").is_file():
            raise FileNotFoundError(f"no {bit.with_suffix('.hwh')}: PYNQ needs the hardware "
                                    "handoff next to the bitstream, with the same name")
        facts = board_facts.load()
        self.max_send_bytes = facts.max_transfer_bytes
        # one request is one MM2S transfer from one contiguous buffer: an
        # INFER_BATCH message of the core's max_batch goes whole
        self.max_request_bytes = self.max_send_bytes
        self.length_mask = (1 << facts["dma"]["sg_length_width"]) - 1
        # the longest frame the guard lets through: MAX_WORDS plus its closing tail
        self.max_reply_words = facts["guard"]["max_words"] + S.GUARD_TAIL_WORDS

        self.overlay = pynq.Overlay(str(bit), download=False)
        if download:
            _fill_zynq7_clock_rates(self.overlay)
            self.overlay.download()
            _set_pl_clock_divisors(self.overlay)
        if not self.overlay.is_loaded():
            # Overlay.__getattr__ raises RuntimeError (not AttributeError) in this state
            raise RuntimeError(f"the PL does not hold {bit.name}: load it first, or construct "
                               "PynqBackend with download=True")
        self.dma = self._ip(DMA_CELL, DMA_VLNV)
        self.core = self._ip(CORE_CELL, facts["hls"]["vlnv"])
        self.csr = self._ip(CSR_CELL, None)
        self.sg = self.dma.recvchannel.__class__.__name__ == "_SGDMAChannel"
        self.rx_buf = pynq.allocate(shape=(self.max_reply_words,), dtype=np.uint32)
        if self.sg:  # XRT buffers are page-aligned: the 64-byte descriptor alignment holds
            self.rx_desc = pynq.allocate(shape=(DESC_WORDS,), dtype=np.uint32)
        # ap_ctrl_hs: the core runs once per ap_start; auto-restart keeps it serving messages.
        self.core.write(AP_CTRL, AP_START | AUTO_RESTART)

    def _ip(self, cell: str, vlnv: str | None):
        """The driver of ``cell``, else of the one IP of type ``vlnv`` (None: optional)."""
        ip_dict = self.overlay.ip_dict
        if cell in ip_dict:
            return getattr(self.overlay, cell)
        if vlnv is None:
            return None
        for name, d in ip_dict.items():
            if d.get("type") == vlnv:
                return getattr(self.overlay, name)
        raise RuntimeError(f"the overlay has no {cell} ({vlnv}): is this the waferq bitstream?")

    def _status(self, reg: int) -> int:
        return int(self.dma.read(reg))

    def _wait(self, idle, status_reg: int, what: str, deadline: float) -> None:
        """Poll DMASR until ``idle()``; raise on an error bit or at the deadline."""
        while True:
            status = self._status(status_reg)
            if status & DMASR_ERRORS:
                raise RuntimeError(f"DMA {what} failed: {decode_dmasr(status)}")
            if idle():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"DMA {what} did not finish within {self.timeout} s: "
                                   f"{decode_dmasr(status)}")
            time.sleep(POLL_S)

    def _reset_dma(self) -> None:
        """Soft-reset the DMA (both channels) and put pynq's channel objects back in step."""
        self.dma.write(MM2S_DMACR, DMACR_RESET)
        self._until(lambda: not self._status(MM2S_DMACR) & DMACR_RESET, "reset")
        # After the reset both channels are halted. pynq's SG channels must be halted for
        # the next transfer (stop() also clears their state); its simple channels must run.
        for ch in (self.dma.sendchannel, self.dma.recvchannel):
            ch.stop()
            if ch.__class__.__name__ == "_SDMAChannel":
                ch.start()

    def _abort(self) -> None:
        """Reset the DMA and the core, restart the core, and drop what an aborted reply
        left in the TX FIFO, so the next transact starts clean."""
        self._reset_dma()
        if self.csr is not None:
            ctl = csr_map.BY_NAME["CONTROL"]
            soft = next(f for f in ctl.fields if f.name == "SOFT_RESET")
            self.csr.write(ctl.offset, soft.mask)
        self.core.write(AP_CTRL, AP_START | AUTO_RESTART)
        self._drain()

    def _drain(self) -> None:
        """Receive and discard stale frames. Neither reset empties the TX FIFO (it is on the
        peripheral reset): a reply the DMA stopped taking stays there, and the frame guard
        closes a reply the soft reset cut short with a RESET tail (TLAST). Both are already
        in the FIFO, so a drain receive that finds nothing within DRAIN_S ends the drain."""
        self.drained = 0
        for _ in range(DRAIN_FRAMES):
            deadline = time.monotonic() + DRAIN_S
            self._arm_receive()
            try:
                self._wait(self._receive_idle, S2MM_DMASR, "drain", deadline)
            except TimeoutError:
                self._reset_dma()  # the FIFO is empty: disarm
                return
            self._finish_receive()
            self.drained += 1
        raise RuntimeError(f"the TX FIFO still gives frames after {DRAIN_FRAMES}: "
                           "the core keeps sending; reload the overlay")

    def _until(self, done, what: str) -> None:
        """Spin on a register condition that the DMA meets within a few cycles."""
        deadline = time.monotonic() + REG_WAIT_S
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"DMA {what} did not take effect within {REG_WAIT_S} s: "
                                   f"MM2S {decode_dmasr(self._status(MM2S_DMASR))}, "
                                   f"S2MM {decode_dmasr(self._status(S2MM_DMASR))}")

    # --- the receive ------------------------------------------------------------------------
    def _arm_receive(self) -> None:
        if not self.sg:
            self.dma.recvchannel.transfer(self.rx_buf)
            return
        # SG build: one descriptor over the whole buffer, CURDESC = TAILDESC
        d, buf = self.rx_desc, self.rx_buf
        if not self._status(S2MM_DMASR) & DMASR_HALTED:
            raise RuntimeError("DMA receive channel is not halted: "
                               f"{decode_dmasr(self._status(S2MM_DMASR))}")
        d[:] = 0
        d[DESC_NXTDESC] = d.physical_address & 0xFFFFFFFF  # itself: it is the tail too
        d[DESC_BUFFER] = buf.physical_address & 0xFFFFFFFF
        d[DESC_CONTROL] = buf.nbytes
        d.flush()
        self.dma.write(S2MM_CURDESC_MSB, d.physical_address >> 32)
        self.dma.write(S2MM_CURDESC, d.physical_address & 0xFFFFFFFF)
        self.dma.write(S2MM_DMACR, DMACR_RS)
        self._until(lambda: not self._status(S2MM_DMASR) & DMASR_HALTED, "receive start")
        self.dma.write(S2MM_TAILDESC_MSB, d.physical_address >> 32)
        self.dma.write(S2MM_TAILDESC, d.physical_address & 0xFFFFFFFF)  # starts the fetch

    def _receive_idle(self) -> bool:
        if not self.sg:
            return self.dma.recvchannel.idle
        return bool(self._status(S2MM_DMASR) & DMASR_IDLE)

    def _finish_receive(self) -> int:
        """The idle receive's byte count; the channel is left ready for the next arm."""
        if not self.sg:
            recv = self.dma.recvchannel
            recv.wait()  # idle: returns at once, invalidates, reads S2MM_LENGTH
            return int(recv.transferred)
        d = self.rx_desc
        d.invalidate()
        status = int(d[DESC_STATUS])
        self.dma.write(S2MM_DMACR, 0)
        self._until(lambda: self._status(S2MM_DMASR) & DMASR_HALTED, "receive stop")
        errors = [name for bit, name in DESC_ERRORS.items() if status & bit]
        if errors or not status & DESC_CMPLT:
            raise RuntimeError(f"DMA receive descriptor status 0x{status:08x}: "
                               f"{', '.join(errors) or 'not completed'}")
        if not status & DESC_RXEOF:
            raise RuntimeError(f"DMA receive: the reply did not end (no TLAST) within the "
                               f"{self.rx_buf.nbytes}-byte buffer")
        self.rx_buf.invalidate()
        return status & self.length_mask

    def transact(self, words) -> np.ndarray:
        words = np.asarray(words, dtype=np.uint32).ravel()
        if not MIN_REQUEST_WORDS * 4 <= words.nbytes <= self.max_send_bytes:
            raise ValueError(f"a request of {words.nbytes} bytes is not a message that fits one "
                             f"DMA transfer ({MIN_REQUEST_WORDS * 4}..{self.max_send_bytes})")
        tx = self._pynq.allocate(shape=(words.size,), dtype=np.uint32)
        send = self.dma.sendchannel
        try:
            tx[:] = words
            deadline = time.monotonic() + self.timeout
            # arm the receive first, so the core never stalls on a full TX FIFO
            self._arm_receive()
            send.transfer(tx)  # flushes tx
            self._wait(lambda: send.idle, MM2S_DMASR, "send", deadline)
            send.wait()  # idle: returns at once (SG: checks the descriptors, halts)
            self._wait(self._receive_idle, S2MM_DMASR, "receive", deadline)
            nbytes = self._finish_receive()
            if nbytes == 0 or nbytes % 4:
                raise RuntimeError(f"DMA receive moved {nbytes} bytes: not whole 32-bit words")
            return np.array(self.rx_buf[: nbytes // 4], dtype=np.uint32)
        except BaseException:
            self._abort()  # whatever failed, leave no channel running or armed
            raise
        finally:
            tx.freebuffer()

    def close(self) -> None:
        for name in ("rx_buf", "rx_desc"):
            buf = getattr(self, name)
            if buf is not None:
                buf.freebuffer()
                setattr(self, name, None)


def _set_pl_clock_divisors(overlay) -> None:
    """pynq 4.0.0's Zynq-7000 clock code assumes a 50 MHz PS reference clock (PYNQ-Z1/Z2);
    the Zybo Z7's is 33.333 MHz, so the divisors it derives from a rate give FCLK0 66.7 MHz
    where the design asks for 100. Vivado computed the divisors for the real crystal and
    the .hwh carries them: set those."""
    from pynq.ps import Clocks
    for i, clock in overlay.clock_dict.items():
        if clock.get("enable") and clock.get("divisor0") and clock.get("divisor1"):
            Clocks.set_pl_clk(i, div0=int(clock["divisor0"]), div1=int(clock["divisor1"]))


def _fill_zynq7_clock_rates(overlay) -> None:
    """pynqmetadata 0.2.0 (with pynq 4.0.0) looks for a Zynq-7000 PL clock's rate under the
    ZynqMP parameter name, finds none, and Overlay.download() then fails in
    Clocks.set_pl_clk(clk_mhz=None). Vivado's PS7 .hwh has the rate as
    PCW_ACT_FPGA<i>_PERIPHERAL_FREQMHZ: fill it in from there."""
    params = next((d.get("parameters", {}) for d in overlay.ip_dict.values()
                   if str(d.get("type", "")).startswith("xilinx.com:ip:processing_system7:")), {})
    for i, clock in overlay.clock_dict.items():
        rate = params.get(f"PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ")
        if clock.get("frequency") is None and rate is not None:
            clock["frequency"] = float(rate)
