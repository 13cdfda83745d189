"""cocotb tests of zybo_z7/rtl/wq_glue_top.v: the frame guard run through its CSR block,
as the driver will see it (AXI4-Lite + AXI-Stream, active-low aresetn)."""
from __future__ import annotations

import random

import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
    from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                               AxiStreamSink, AxiStreamSource)

    from axi_checks import AxiLiteSlaveMonitor, AxiStreamMasterMonitor
    from pauses import PAUSES
except ImportError:  # collected by pytest without cocotb: the wrapper skips
    cocotb = None

from protocol import stream as S
from zybo_z7 import csr_map as M

MAX_WORDS = 16
SOFT_RESET_CYCLES = 8
TIMEOUT = 30
R = M.BY_NAME


def mask(reg, field):
    return next(f.mask for f in R[reg].fields if f.name == field)


def message(rng, n, opcode=S.OP_INFER | S.REPLY_BIT):
    return [int(w) for w in S.encode(opcode, [rng.getrandbits(32) for _ in range(n)],
                                     rng.getrandbits(32))]


def closed(msg, k, code):
    return msg[:k] + [int(w) for w in S.encode(S.OP_ERROR, [code, k], msg[2] if k >= 3 else 0)]


if cocotb is not None:

    class TB:
        def __init__(self, dut):
            self.dut = dut
            # aresetn driven before anything samples it (core_rst_n follows it combinationally)
            dut.aresetn.setimmediatevalue(1)
            cocotb.start_soon(Clock(dut.aclk, 10, unit="ns").start(start_high=False))
            kw = dict(reset=dut.aresetn, reset_active_level=False)
            self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.aclk, **kw)
            self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk,
                                          byte_size=32, **kw)
            self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk,
                                      byte_size=32, **kw)
            self.lite_mon = AxiLiteSlaveMonitor(dut, dut.aclk, **kw)
            self.stream_mon = AxiStreamMasterMonitor(dut, dut.aclk, **kw)
            self.in_beats = 0
            self.core_reset_cycles = 0
            cocotb.start_soon(self._monitor())

        def check(self):
            self.lite_mon.check()
            self.stream_mon.check()

        async def _monitor(self):
            d = self.dut
            while True:
                await RisingEdge(d.aclk)
                if d.s_axis_tvalid.value and d.s_axis_tready.value:
                    self.in_beats += 1
                if d.aresetn.value and not d.core_rst_n.value:
                    self.core_reset_cycles += 1

        def set_idle_generator(self, generator=None):
            if generator:
                self.source.set_pause_generator(generator())
                self.axil.write_if.aw_channel.set_pause_generator(generator())
                self.axil.read_if.ar_channel.set_pause_generator(generator())

        def set_backpressure_generator(self, generator=None):
            if generator:
                self.sink.set_pause_generator(generator())
                self.axil.read_if.r_channel.set_pause_generator(generator())

        async def reset(self):
            self.dut.aresetn.setimmediatevalue(1)
            await ClockCycles(self.dut.aclk, 2)
            self.dut.aresetn.value = 0
            await ClockCycles(self.dut.aclk, 3)
            self.dut.aresetn.value = 1
            await ClockCycles(self.dut.aclk, 3)

        async def read(self, name):
            return await self.axil.read_dword(R[name].offset)

        async def write(self, name, value):
            await self.axil.write_dword(R[name].offset, value)

        async def recv(self):
            return [int(w) for w in (await with_timeout(self.sink.recv(), 100, "us")).tdata]

        async def counters(self):
            return tuple([await self.read(n) for n in
                          ("FRAMES_OK", "FRAMES_TIMEOUT", "FRAMES_OVERLONG", "FRAMES_ERROR")])

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_glue(dut, idle_inserter=None, backpressure_inserter=None):
        """Timeout set over AXI4-Lite; counters count ok / timeout / overlong / error frames;
        CLEAR_COUNTERS zeroes them; SOFT_RESET resets the core and closes an open reply."""
        tb = TB(dut)
        dut.s_axis_tvalid.value = 0
        await tb.reset()
        tb.set_idle_generator(idle_inserter)
        tb.set_backpressure_generator(backpressure_inserter)
        rng = random.Random(11)

        assert await tb.read("VERSION") == M.CSR_VERSION
        assert await tb.read("MAX_WORDS") == MAX_WORDS
        await tb.write("TIMEOUT_CYCLES", TIMEOUT)

        ok = message(rng, 3)
        err = [int(w) for w in S.encode(S.OP_ERROR, [S.ERR_UNKNOWN_OPCODE, 0x42], 9)]
        long = message(rng, 2 * MAX_WORDS)
        for m in (ok, err, long):
            await tb.source.send(AxiStreamFrame(m))
        assert await tb.recv() == ok
        assert await tb.recv() == err
        assert await tb.recv() == closed(long, MAX_WORDS, M.GUARD_ERR_OVERLONG)

        # a stall: hold the source after 5 words of the message
        gen = tb.source._pause_generator
        stalled = message(rng, 6)
        await tb.source.wait()  # the rest of the long message has been dropped
        start = tb.in_beats
        await tb.source.send(AxiStreamFrame(stalled))
        while tb.in_beats < start + 5:
            await RisingEdge(dut.aclk)
        tb.source.clear_pause_generator()
        tb.source.pause = True
        out = await tb.recv()
        k = len(out) - M.GUARD_TAIL_WORDS
        assert out == closed(stalled, k, M.GUARD_ERR_TIMEOUT)
        assert await tb.read("STATUS") & mask("STATUS", "DROPPING")
        tb.source.pause = False
        if gen is not None:
            tb.source.set_pause_generator(gen)
        await tb.source.wait()
        await ClockCycles(dut.aclk, 10)
        assert await tb.counters() == (2, 1, 1, 1)
        status = await tb.read("STATUS")
        assert status == mask("STATUS", "TIMEOUT_SEEN") | mask("STATUS", "OVERLONG_SEEN")

        await tb.write("CONTROL", mask("CONTROL", "CLEAR_COUNTERS"))
        assert await tb.counters() == (0, 0, 0, 0)

        # soft reset while a reply is open: the core is held in reset, the reply is closed
        await tb.write("TIMEOUT_CYCLES", 0)
        gen = tb.source._pause_generator
        cut = message(rng, 6)
        await tb.source.wait()
        start = tb.in_beats
        await tb.source.send(AxiStreamFrame(cut))
        while tb.in_beats < start + 4:
            await RisingEdge(dut.aclk)
        tb.source.clear_pause_generator()
        tb.source.pause = True
        await ClockCycles(dut.aclk, 2)
        k = tb.in_beats - start
        base = tb.core_reset_cycles
        await tb.write("CONTROL", mask("CONTROL", "SOFT_RESET"))
        assert await tb.recv() == closed(cut, k, M.GUARD_ERR_RESET)
        await ClockCycles(dut.aclk, SOFT_RESET_CYCLES + 2)
        assert tb.core_reset_cycles - base == SOFT_RESET_CYCLES
        tb.source.clear()
        tb.source.pause = False  # what is left of the cut message now is a new message
        assert await tb.recv() == cut[k:]
        if gen is not None:
            tb.source.set_pause_generator(gen)
        assert await tb.counters() == (1, 0, 0, 0)
        tb.check()

    @cocotb.test()
    async def run_test_reset_in_traffic(dut):
        """aresetn falls while a message streams, m_axis is stalled with TVALID high and a read
        response waits for RREADY: from the first edge in reset TVALID, BVALID and RVALID are
        low; after reset the registers read their reset values and a new message passes."""
        tb = TB(dut)
        dut.s_axis_tvalid.value = 0
        await tb.reset()
        rng = random.Random(12)
        await tb.write("TIMEOUT_CYCLES", TIMEOUT)
        await tb.write("SCRATCH", 0x600DF00D)
        tb.sink.pause = True  # stall the output: TVALID high, TREADY low
        long = message(rng, 2 * MAX_WORDS)
        await tb.source.send(AxiStreamFrame(long))
        while not (dut.m_axis_tvalid.value and tb.stream_mon.stalled >= 3):
            await RisingEdge(dut.aclk)
        tb.axil.read_if.r_channel.pause = True  # a read answered but not taken: RVALID high
        # started, never awaited: the master flushes it when it sees the reset
        tb.axil.init_read(R["SCRATCH"].offset, 4)
        while not dut.s_axil_rvalid.value:
            await RisingEdge(dut.aclk)
        assert dut.m_axis_tvalid.value and dut.msg_open.value
        dut.aresetn.value = 0
        await RisingEdge(dut.aclk)  # the first edge in reset
        await RisingEdge(dut.aclk)
        assert not (dut.m_axis_tvalid.value or dut.s_axil_rvalid.value
                    or dut.s_axil_bvalid.value)
        assert not dut.core_rst_n.value
        await ClockCycles(dut.aclk, 3)
        tb.source.clear()
        tb.sink.clear()
        tb.axil.read_if.r_channel.pause = False
        tb.sink.pause = False
        dut.aresetn.value = 1
        await ClockCycles(dut.aclk, 3)
        assert dut.core_rst_n.value
        assert await tb.read("SCRATCH") == R["SCRATCH"].reset
        assert await tb.read("TIMEOUT_CYCLES") == R["TIMEOUT_CYCLES"].reset
        assert await tb.counters() == (0, 0, 0, 0)
        assert await tb.read("STATUS") == 0
        after = message(rng, 3)
        await tb.source.send(AxiStreamFrame(after))
        assert await tb.recv() == after
        assert tb.stream_mon.stalled >= 3
        tb.check()


@pytest.mark.rtl_sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_wq_glue_top(sim, monkeypatch):
    from rtl_sim import run

    run(sim, "wq_glue_top", "test_wq_glue_top",
        ["wq_frame_guard.v", "wq_csr.v", "wq_glue_top.v"],
        parameters={"MAX_WORDS": MAX_WORDS, "SOFT_RESET_CYCLES": SOFT_RESET_CYCLES},
        monkeypatch=monkeypatch)
