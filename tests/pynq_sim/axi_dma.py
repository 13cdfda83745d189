"""A register-level model of the AMD/Xilinx AXI DMA 7.1 (PG021), direct-register and
scatter-gather modes, for running pynq's own DMA driver code without a board.

What it models (PG021 "Register Space", "Scatter Gather Descriptor"):
- per channel (MM2S at 0x00, S2MM at 0x30): DMACR (RS, Reset, IOC/Dly/Err IrqEn,
  IRQThreshold), DMASR (Halted, Idle, SGIncld, the six error bits, the W1C interrupt
  bits), CURDESC/TAILDESC (+MSB), SA/DA (+MSB), LENGTH;
- Reset on either channel resets both, and reads back 1 for ``reset_reads`` DMACR reads;
- an error halts the channel (DMASR.Halted=1, DMACR.RS=0, Err_Irq) until a reset;
- simple mode: writing LENGTH while running starts a transfer; S2MM ends at TLAST and
  writes the received byte count back to S2MM_LENGTH; Idle stays 0 from RS=1 until the
  first transfer completes;
- SG mode: writing TAILDESC while running fetches descriptors from CURDESC along NXTDESC
  up to TAILDESC; each gets its status word (transferred bytes, RXSOF/RXEOF on S2MM,
  DMAIntErr/SlvErr/DecErr, Cmplt). An S2MM packet ends with TLAST inside a descriptor and
  the next packet starts in the next one; a descriptor waiting for data keeps the channel
  busy (not Idle). A descriptor whose Cmplt bit is already set is an SGIntErr, a zero
  buffer length a DMAIntErr, an address outside DDR a DecErr.

Not modelled: the interrupt delay timer, keyhole, cyclic BDs, the status/control stream,
multichannel, DRE (the block design builds none), bus timing. Data moves when a register
write lets it (``Fabric.run``), in a fixed order, so the model has no timing at all.

Strict: register writes that PG021 leaves undefined (CURDESC while running, LENGTH while
halted, an unaligned buffer without DRE) are recorded in ``violations``; tests assert it
stays empty.
"""
from __future__ import annotations

# DMACR / DMASR bits (PG021 tables 2-7, 2-9, 2-15, 2-17)
RS, RESET = 1 << 0, 1 << 2
HALTED, IDLE, SG_INCLD = 1 << 0, 1 << 1, 1 << 3
DMA_INT_ERR, DMA_SLV_ERR, DMA_DEC_ERR = 1 << 4, 1 << 5, 1 << 6
SG_INT_ERR, SG_SLV_ERR, SG_DEC_ERR = 1 << 8, 1 << 9, 1 << 10
IOC_IRQ, DLY_IRQ, ERR_IRQ = 1 << 12, 1 << 13, 1 << 14
DMACR_RESET_VALUE = 0x0001_0000  # IRQThreshold = 1
DMACR_WRITABLE = 0xFFFF_701D  # RS, Reset, Keyhole, Cyclic BD, IrqEn x3, threshold, delay
ERRORS = {"DMAIntErr": DMA_INT_ERR, "DMASlvErr": DMA_SLV_ERR, "DMADecErr": DMA_DEC_ERR,
          "SGIntErr": SG_INT_ERR, "SGSlvErr": SG_SLV_ERR, "SGDecErr": SG_DEC_ERR}
ERROR_MASK = sum(ERRORS.values())

# Descriptor words (PG021 table 4-2..4-5), 32-bit index into the 16-word (64 B) slot
NXTDESC, NXTDESC_MSB, BUFFER_ADDRESS, BUFFER_ADDRESS_MSB, CONTROL, STATUS = 0, 1, 2, 3, 6, 7
TXEOF, TXSOF = 1 << 26, 1 << 27  # CONTROL (MM2S only; S2MM ignores them)
RXEOF, RXSOF = 1 << 26, 1 << 27  # STATUS (S2MM)
ST_INT_ERR, ST_SLV_ERR, ST_DEC_ERR, ST_CMPLT = 1 << 28, 1 << 29, 1 << 30, 1 << 31

# register offsets inside a channel's 0x30 block
DMACR, DMASR, CURDESC, CURDESC_MSB, TAILDESC, TAILDESC_MSB, ADDR, ADDR_MSB, LENGTH = (
    0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x28)


class BusError(Exception):
    """An AXI access the model answers with DECERR (no memory there)."""


class Channel:
    def __init__(self, dma: "AxiDma", name: str, base: int):
        self.dma, self.name, self.base = dma, name, base
        self.reset()

    def reset(self) -> None:
        self.dmacr = DMACR_RESET_VALUE
        self.dmasr = HALTED | (SG_INCLD if self.dma.sg else 0)
        self.curdesc = self.taildesc = 0
        self.addr = self.length = 0
        self.busy = False  # a transfer (simple) or a descriptor chain (SG) is in progress
        self.started_once = False
        self.bytes_done = 0  # of the current simple transfer / current descriptor
        self.packet_open = False  # S2MM: inside a packet (SOF seen, no TLAST yet)
        self.fail = None  # an injected error: the next data access fails with it
        self.pending_status = 0  # S2MM SG: RXSOF of a descriptor still waiting for data

    # --- registers --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self.dmasr & HALTED

    def read(self, off: int) -> int:
        if off == DMACR:
            return self.dmacr
        if off == DMASR:
            return self.dmasr
        return {CURDESC: self.curdesc, TAILDESC: self.taildesc, ADDR: self.addr,
                LENGTH: self.length}.get(off, 0)

    def write(self, off: int, value: int) -> None:
        if off == DMACR:
            if value & RESET:
                self.dma.soft_reset()
                return
            self.dmacr = value & DMACR_WRITABLE
            if value & RS and not self.dmasr & HALTED:
                return
            if value & RS:
                if self.dmasr & ERROR_MASK:
                    return  # an errored channel stays halted until reset (PG021)
                self.dmasr &= ~HALTED
                if self.dma.sg:
                    self.dmasr = self.dmasr & ~IDLE if self.busy else self.dmasr | IDLE
                elif not self.started_once:
                    self.dmasr &= ~IDLE  # simple mode: Idle only after a transfer completes
            else:
                self.dmasr |= HALTED  # stop: outstanding work is flushed
                self.busy = False
        elif off == DMASR:
            self.dmasr &= ~(value & (IOC_IRQ | DLY_IRQ | ERR_IRQ))  # W1C
        elif off == CURDESC:
            if self.running:
                self.dma.violation(f"{self.name} CURDESC written while running")
            self.curdesc = value & 0xFFFF_FFC0
        elif off == TAILDESC:
            self.taildesc = value & 0xFFFF_FFC0
            if not self.dma.sg:
                self.dma.violation(f"{self.name} TAILDESC written in simple mode")
            elif not self.running:
                self.dma.violation(f"{self.name} TAILDESC written while halted")
            else:
                self.busy, self.bytes_done = True, 0
                self.dmasr &= ~IDLE
        elif off == ADDR:
            self.addr = value
        elif off == LENGTH:
            if self.dma.sg:
                self.dma.violation(f"{self.name} LENGTH written in SG mode")
                return
            if not self.running:
                self.dma.violation(f"{self.name} LENGTH written while halted")
                return
            if self.busy:
                self.dma.violation(f"{self.name} LENGTH written while a transfer runs")
            self.length = value & self.dma.length_mask
            if self.addr % self.dma.width:
                self.dma.violation(f"{self.name} buffer 0x{self.addr:x} is not "
                                   f"{self.dma.width}-byte aligned and there is no DRE")
            if self.length == 0:
                self.error(DMA_INT_ERR)
                return
            self.busy, self.bytes_done, self.started_once = True, 0, True
            self.dmasr &= ~IDLE
        elif off in (CURDESC_MSB, TAILDESC_MSB, ADDR_MSB):
            if value:
                self.dma.violation(f"{self.name} 0x{off:x} = 0x{value:x}: the DMA has 32-bit addresses")

    # --- completion and errors -----------------------------------------------------------
    def error(self, bit: int) -> None:
        self.dmasr = (self.dmasr | bit | HALTED | ERR_IRQ) & ~IDLE
        self.dmacr &= ~RS
        self.busy = False

    def complete(self) -> None:
        self.busy = False
        self.dmasr |= IDLE | IOC_IRQ

    def _access(self, kind: str) -> None:
        """An injected error strikes the next data access of this channel."""
        if self.fail is not None:
            bit, self.fail = self.fail, None
            raise BusError(bit)

    # --- data movement ------------------------------------------------------------------
    def step(self) -> bool:
        """Move what can be moved now; True if anything changed."""
        if not self.busy or not self.running:
            return False
        if self.dma.sg:
            return self._step_sg()
        return self._step_simple()

    def _step_simple(self) -> bool:
        ddr, dma = self.dma.ddr, self.dma
        try:
            if self.name == "MM2S":
                self._access("read")
                words = ddr.read_words(self.addr, self.length // 4)
                for i, w in enumerate(words):
                    dma.mm2s_out(int(w), i == len(words) - 1)
                self.complete()
                return True
            moved = False
            while dma.s2mm_in:
                if self.bytes_done + 4 > self.length:
                    # the packet is longer than S2MM_LENGTH (PG021: DMAIntErr)
                    self.error(DMA_INT_ERR)
                    return True
                word, last = dma.s2mm_in.popleft()
                self._access("write")
                ddr.write_words(self.addr + self.bytes_done, [word])
                self.bytes_done += 4
                moved = True
                if last:
                    self.length = self.bytes_done  # S2MM_LENGTH: bytes received
                    self.complete()
                    return True
            return moved
        except BusError as e:
            self.error(e.args[0])
            return True
        except IndexError:
            self.error(DMA_DEC_ERR)
            return True

    def _step_sg(self) -> bool:
        ddr, dma, moved = self.dma.ddr, self.dma, False
        while self.busy:
            try:
                desc = ddr.read_words(self.curdesc, 13)
            except IndexError:
                self.error(SG_DEC_ERR)
                return True
            if desc[STATUS] & ST_CMPLT and self.bytes_done == 0:
                self.error(SG_INT_ERR)  # a completed descriptor fetched again
                return True
            size = int(desc[CONTROL]) & self.dma.length_mask
            buf = int(desc[BUFFER_ADDRESS])
            if size == 0:
                self._finish_desc(desc, ST_INT_ERR)
                self.error(DMA_INT_ERR)
                return True
            if buf % self.dma.width:
                self.dma.violation(f"{self.name} descriptor buffer 0x{buf:x} is unaligned, no DRE")
            status = 0
            try:
                if self.name == "MM2S":
                    self._access("read")
                    words = ddr.read_words(buf, size // 4)
                    eof = bool(desc[CONTROL] & TXEOF)
                    for i, w in enumerate(words):
                        dma.mm2s_out(int(w), eof and i == len(words) - 1)
                    self.bytes_done = size
                else:
                    ended = False
                    while self.bytes_done < size and dma.s2mm_in:
                        word, last = dma.s2mm_in.popleft()
                        self._access("write")
                        if not self.packet_open and self.bytes_done == 0:
                            status |= RXSOF
                        self.packet_open = not last
                        ddr.write_words(buf + self.bytes_done, [word])
                        self.bytes_done += 4
                        moved = True
                        if last:
                            status |= RXEOF
                            ended = True
                            break
                    if not ended and self.bytes_done < size:
                        # waiting for stream data: keep the partial count in the status word
                        self.pending_status |= status
                        return moved
                    status |= self.pending_status
                    self.pending_status = 0
            except BusError as e:
                self._finish_desc(desc, {DMA_SLV_ERR: ST_SLV_ERR, DMA_DEC_ERR: ST_DEC_ERR,
                                         DMA_INT_ERR: ST_INT_ERR}[e.args[0]])
                self.error(e.args[0])
                return True
            except IndexError:
                self._finish_desc(desc, ST_DEC_ERR)
                self.error(DMA_DEC_ERR)
                return True
            self._finish_desc(desc, status | ST_CMPLT | self.bytes_done)
            moved = True
            if self.curdesc == self.taildesc:
                self.complete()
                return True
            self.curdesc, self.bytes_done = int(desc[NXTDESC]) & 0xFFFF_FFC0, 0
        return moved

    def _finish_desc(self, desc, status: int) -> None:
        self.dma.ddr.write_words(self.curdesc + 4 * STATUS, [status])
        self.dma.status_log.append((self.name, self.curdesc, status))


class AxiDma:
    """Both channels behind one S_AXI_LITE window (offsets as PG021 gives them)."""

    def __init__(self, ddr, sg: bool, length_width: int = 26, data_width: int = 32,
                 reset_reads: int = 2):
        self.ddr, self.sg = ddr, sg
        self.length_mask = (1 << length_width) - 1
        self.width = data_width // 8
        self.reset_reads = reset_reads
        self.violations: list[str] = []
        self.status_log: list[tuple[str, int, int]] = []  # (channel, descriptor, status word)
        self.mm2s_out = None  # set by the fabric: (word, last) -> None
        self.s2mm_in = None  # set by the fabric: a deque of (word, last)
        self._reset_left = 0
        self.resets = 0
        self.mm2s = Channel(self, "MM2S", 0x00)
        self.s2mm = Channel(self, "S2MM", 0x30)

    def violation(self, text: str) -> None:
        self.violations.append(text)

    def soft_reset(self) -> None:
        self.resets += 1
        self.mm2s.reset()
        self.s2mm.reset()
        self._reset_left = self.reset_reads

    def _channel(self, off: int) -> tuple[Channel, int]:
        return (self.s2mm, off - 0x30) if 0x30 <= off < 0x60 else (self.mm2s, off)

    def read(self, off: int) -> int:
        ch, reg = self._channel(off)
        value = ch.read(reg)
        if reg == DMACR and self._reset_left:
            self._reset_left -= 1
            value |= RESET  # the reset is still in progress
        return value

    def write(self, off: int, value: int) -> None:
        ch, reg = self._channel(off)
        ch.write(reg, value)

    def inject(self, channel: str, error: str) -> None:
        """The next data access of ``channel`` ("MM2S"/"S2MM") fails with ``error``."""
        getattr(self, channel.lower()).fail = ERRORS[error]

    def step(self) -> bool:
        return self.mm2s.step() | self.s2mm.step()
