"""PynqBackend against a stand-in of pynq 4.0's API (Overlay, allocate, the SG DMA channels)
that routes the words to hls.refcore.RefCore, with the CPU cache modelled: what the CPU
wrote reaches the DMA only after flush(), what the DMA wrote is seen only after invalidate()."""
import sys
import types

import numpy as np
import pytest

from hls.refcore import RefCore
from protocol import stream as S
from quant.spec import CNNSpec
from zybo_z7 import pynq_backend as PB


class FakeBuffer(np.ndarray):
    def flush(self):
        self.device[:] = self

    def invalidate(self):
        self[:] = self.device

    def freebuffer(self):
        self.freed = True


def allocate(shape, dtype):
    buf = np.zeros(shape, dtype).view(FakeBuffer)
    buf.device, buf.freed = np.zeros(shape, dtype), False
    return buf


class FakeChannel:
    def __init__(self, dma, status_reg):
        self.dma, self.reg, self.buf, self.transferred = dma, status_reg, None, 0
        dma.regs[status_reg] = 0x1 | 0x8  # Halted, SGIncld

    idle = property(lambda self: bool(self.dma.regs[self.reg] & 0x2))

    def transfer(self, buf, start=0, nbytes=0):
        assert self.dma.regs[self.reg] & 0x1, "pynq refuses a transfer unless halted"
        self.buf, self.dma.regs[self.reg] = buf, 0x8
        if self is self.dma.sendchannel:
            self.dma.deliver(np.array(buf.device))

    def wait(self):
        assert self.idle, "pynq 4.0 wait() would spin forever here"
        self.dma.regs[self.reg] = 0x1 | 0x8

    def stop(self):
        self.dma.regs[self.reg] = 0x1 | 0x8


class FakeDMA:
    def __init__(self, core, mode):
        self.core, self.mode, self.regs, self.writes = core, mode, {0: 0, 0x30: 0}, []
        self.sendchannel = FakeChannel(self, PB.MM2S_DMASR)
        self.recvchannel = FakeChannel(self, PB.S2MM_DMASR)

    def read(self, off):
        return self.regs.get(off, 0)

    def write(self, off, value):
        self.writes.append((off, value))

    def deliver(self, request):
        self.regs[PB.MM2S_DMASR] |= 0x2
        if self.mode == "hang":
            return
        if self.mode == "decerr":
            self.regs[PB.S2MM_DMASR] |= 1 << 6 | 1 << 14
            return
        reply = self.core.handle(request)
        rx = self.recvchannel
        rx.buf.device[: reply.size] = reply
        rx.transferred = 4 * reply.size
        self.regs[PB.S2MM_DMASR] |= 0x2


class FakeIP:
    def __init__(self):
        self.writes = []

    def write(self, off, value):
        self.writes.append((off, value))


@pytest.fixture
def fake_pynq(monkeypatch, tmp_path):
    spec = CNNSpec.uniform(4, 4)
    state = {"mode": "ok"}

    class Overlay:
        def __init__(self, path, download=True):
            self.axi_dma_0 = FakeDMA(RefCore(spec), state["mode"])
            self.waferq_top_0, self.wq_glue_0 = FakeIP(), FakeIP()
            self.ip_dict = {"axi_dma_0": {"type": PB.DMA_VLNV}}
            state["overlay"] = self

    monkeypatch.setitem(sys.modules, "pynq", types.SimpleNamespace(Overlay=Overlay, allocate=allocate))
    bit = tmp_path / "waferq.bit"
    bit.write_bytes(b"bit")
    (tmp_path / "waferq.hwh").write_text("<hwh/>")
    return bit, state


def test_query_round_trip(fake_pynq):
    bit, state = fake_pynq
    be = PB.PynqBackend(bit, timeout=1.0)
    assert state["overlay"].waferq_top_0.writes == [(PB.AP_CTRL, PB.AP_START | PB.AUTO_RESTART)]
    request = S.encode(S.OP_QUERY, [], tag=9)
    reply = be.transact(request)
    assert np.array_equal(reply, RefCore(CNNSpec.uniform(4, 4)).handle(request))
    assert S.decode(reply).tag == 9
    be.close()


def test_timeout_names_the_status(fake_pynq):
    bit, state = fake_pynq
    state["mode"] = "hang"
    be = PB.PynqBackend(bit, timeout=0.05)
    with pytest.raises(TimeoutError, match=r"DMA receive did not finish within 0.05 s: DMASR"):
        be.transact(S.encode(S.OP_QUERY))
    dma = state["overlay"].axi_dma_0
    assert (PB.MM2S_DMACR, PB.DMACR_RESET) in dma.writes  # reset after the timeout
    assert state["overlay"].wq_glue_0.writes  # and the core's soft reset


def test_dma_error_is_a_sentence(fake_pynq):
    bit, state = fake_pynq
    state["mode"] = "decerr"
    be = PB.PynqBackend(bit, timeout=1.0)
    with pytest.raises(RuntimeError, match=r"DMA receive failed: .*DMADecErr.*invalid buffer address"):
        be.transact(S.encode(S.OP_QUERY))


def test_decode_dmasr():
    assert PB.decode_dmasr(0x0000000B) == "DMASR 0x0000000b [Halted, Idle, SGIncld]"
    text = PB.decode_dmasr(1 << 10 | 1 << 14)
    assert "SGDecErr" in text and "Err_Irq" in text and "invalid descriptor address" in text
    assert PB.DMASR_ERRORS == 0x770  # the bits pynq's own channel.error tests


def test_missing_hwh(fake_pynq):
    bit, _ = fake_pynq
    bit.with_suffix(".hwh").unlink()
    with pytest.raises(FileNotFoundError, match="hardware handoff"):
        PB.PynqBackend(bit)


def test_without_pynq(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ImportError
    with pytest.raises(RuntimeError, match="^pynq is not installed: the PYNQ backend runs on a "
                                           "PYNQ image on the board$"):
        PB.PynqBackend(tmp_path / "waferq.bit")


@pytest.mark.skip(reason="board_only: needs a Zybo Z7-20 running a PYNQ image with the bitstream")
def test_board_only_query_on_the_board():
    be = PB.PynqBackend("/home/xilinx/waferq/waferq.bit")
    assert S.decode(be.transact(S.encode(S.OP_QUERY))).opcode == S.OP_QUERY | S.REPLY_BIT
