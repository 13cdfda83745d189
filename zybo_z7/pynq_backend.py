"""The accelerator through PYNQ on the board: pynq.Overlay + the AXI DMA in user space.

    backend = PynqBackend("/home/xilinx/waferq/waferq.bit")   # waferq.hwh next to it
    reply = backend.transact(request_words)

An alternative to the ``chardev`` backend for a PYNQ image, which ships no waferq
driver: PYNQ maps the DMA's registers and allocates contiguous buffers itself. Words are
uint32, little-endian as the DMA moves them; one request gives one reply (TLAST ends it).

pynq 4.0's ``DMA`` channel ``wait()`` spins without a deadline, so this backend polls the
channel's status register with one, and calls ``wait()`` only once the channel is idle
(then it returns at once, counts the bytes moved and invalidates the receive buffer).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from protocol import stream as S
from zybo_z7 import board as board_facts
from zybo_z7 import csr_map

# Block-design cell names (zybo_z7/vivado/block_design.tcl): PYNQ names the overlay's IPs so.
DMA_CELL, CORE_CELL, CSR_CELL = "axi_dma_0", "waferq_top_0", "wq_glue_0"
DMA_VLNV = "xilinx.com:ip:axi_dma:7.1"

# AXI DMA register offsets (PG021): the S2MM registers sit 0x30 above the MM2S ones.
MM2S_DMACR, MM2S_DMASR, S2MM_DMACR, S2MM_DMASR = 0x00, 0x04, 0x30, 0x34
DMACR_RESET = 1 << 2  # soft-resets both channels

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
        bit = Path(bitstream)
        if not bit.is_file():
            raise FileNotFoundError(f"no bitstream at {bit}: copy waferq.bit and waferq.hwh from "
                                    "build/<model>/bitstream to the board")
        if not bit.with_suffix(".hwh").is_file():
            raise FileNotFoundError(f"no {bit.with_suffix('.hwh')}: PYNQ needs the hardware "
                                    "handoff next to the bitstream, with the same name")
        facts = board_facts.load()
        self.max_send_bytes = facts.max_transfer_bytes
        # the longest frame the guard lets through: MAX_WORDS plus its closing tail
        self.max_reply_words = facts["guard"]["max_words"] + S.GUARD_TAIL_WORDS

        self.overlay = pynq.Overlay(str(bit), download=download)
        self.dma = self._ip(DMA_CELL, DMA_VLNV)
        self.core = self._ip(CORE_CELL, facts["hls"]["vlnv"])
        self.csr = getattr(self.overlay, CSR_CELL, None)
        # ap_ctrl_hs: the core runs once per ap_start; auto-restart keeps it serving messages.
        self.core.write(AP_CTRL, AP_START | AUTO_RESTART)
        self.rx_buf = pynq.allocate(shape=(self.max_reply_words,), dtype=np.uint32)

    def _ip(self, cell: str, vlnv: str):
        ip = getattr(self.overlay, cell, None)
        if ip is not None:
            return ip
        for name, d in self.overlay.ip_dict.items():
            if d.get("type") == vlnv:
                return getattr(self.overlay, name)
        raise RuntimeError(f"the overlay has no {cell} ({vlnv}): is this the waferq bitstream?")

    def _status(self, reg: int) -> int:
        return int(self.dma.read(reg))

    def _wait(self, channel, status_reg: int, what: str, deadline: float) -> None:
        while True:
            status = self._status(status_reg)
            if status & DMASR_ERRORS:
                self._abort()
                raise RuntimeError(f"DMA {what} failed: {decode_dmasr(status)}")
            if channel.idle:
                channel.wait()  # idle: returns at once, counts bytes, invalidates (receive)
                return
            if time.monotonic() > deadline:
                self._abort()
                raise TimeoutError(f"DMA {what} did not finish within {self.timeout} s: "
                                   f"{decode_dmasr(status)}")
            time.sleep(POLL_S)

    def _abort(self) -> None:
        """Reset both DMA channels and the core, so the next transact starts clean."""
        self.dma.write(MM2S_DMACR, DMACR_RESET)
        deadline = time.monotonic() + 0.1
        while self._status(MM2S_DMACR) & DMACR_RESET and time.monotonic() < deadline:
            time.sleep(POLL_S)
        for ch in (self.dma.sendchannel, self.dma.recvchannel):
            ch.stop()
        if self.csr is not None:
            ctl = csr_map.BY_NAME["CONTROL"]
            soft = next(f for f in ctl.fields if f.name == "SOFT_RESET")
            self.csr.write(ctl.offset, soft.mask)
        self.core.write(AP_CTRL, AP_START | AUTO_RESTART)

    def transact(self, words) -> np.ndarray:
        words = np.asarray(words, dtype=np.uint32).ravel()
        if not 0 < words.nbytes <= self.max_send_bytes:
            raise ValueError(f"a request of {words.nbytes} bytes does not fit one DMA transfer "
                             f"(1..{self.max_send_bytes})")
        tx = self._pynq.allocate(shape=(words.size,), dtype=np.uint32)
        try:
            tx[:] = words
            tx.flush()  # the DMA reads DDR, not the CPU's cache
            deadline = time.monotonic() + self.timeout
            # arm the receive first, so the core never stalls on a full TX FIFO
            self.dma.recvchannel.transfer(self.rx_buf)
            self.dma.sendchannel.transfer(tx)
            self._wait(self.dma.sendchannel, MM2S_DMASR, "send", deadline)
            self._wait(self.dma.recvchannel, S2MM_DMASR, "receive", deadline)
            self.rx_buf.invalidate()  # the DMA wrote DDR behind the cache
            nbytes = int(self.dma.recvchannel.transferred)
            if nbytes == 0 or nbytes % 4:
                raise RuntimeError(f"DMA receive moved {nbytes} bytes: not whole 32-bit words")
            return np.array(self.rx_buf[: nbytes // 4], dtype=np.uint32)
        finally:
            tx.freebuffer()

    def close(self) -> None:
        if self.rx_buf is not None:
            self.rx_buf.freebuffer()
            self.rx_buf = None
