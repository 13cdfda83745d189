"""The cocotb test bench of zybo_z7/rtl/wq_frame_guard.v that test_wq_frame_guard.py
and test_wq_frame_guard_control.py share.

Words travel as whole 32-bit "bytes" (byte_size=32), so a frame is a list of words.
"""
from __future__ import annotations

import os
import random

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout
    from cocotbext.axi import AxiStreamBus, AxiStreamSink, AxiStreamSource

    from axi_checks import AxiStreamMasterMonitor
    from pauses import paced
except ImportError:  # imported by pytest without cocotb: the wrappers skip
    cocotb = None

from protocol import stream as S
from zybo_z7 import csr_map

# small, so over-long frames are quick to make; the board's value (contract/board.toml)
# in test_wq_frame_guard.py's test_wq_frame_guard_board_limit, which passes it through
# the environment
MAX_WORDS = int(os.environ.get("WQ_GUARD_MAX_WORDS", "16"))
TIMEOUT = 40     # cycles; longer than any idle run of the idle generator
GUARD_CODES = (csr_map.GUARD_ERR_TIMEOUT, csr_map.GUARD_ERR_OVERLONG, csr_map.GUARD_ERR_RESET)


def guard_tail(code: int, k: int, tag: int) -> list[int]:
    """The documented closing tail after k words of a cut message."""
    return [int(w) for w in S.encode(S.OP_ERROR, [code, k], tag)]


def expected_close(msg: list[int], k: int, code: int) -> list[int]:
    return msg[:k] + guard_tail(code, k, msg[2] if k >= 3 else 0)


def message(rng: random.Random, n_payload: int, opcode: int = S.OP_INFER | S.REPLY_BIT) -> list[int]:
    return [int(w) for w in S.encode(opcode, [rng.getrandbits(32) for _ in range(n_payload)],
                                     rng.getrandbits(32))]


if cocotb is not None:

    class TB:
        def __init__(self, dut):
            self.dut = dut
            cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start(start_high=False))
            # drive the control inputs first: s_axis_tready depends on soft_reset
            dut.soft_reset.setimmediatevalue(0)
            dut.counters_clear.setimmediatevalue(0)
            dut.timeout_cycles.setimmediatevalue(TIMEOUT)
            self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk,
                                          dut.rst, byte_size=32)
            self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk,
                                      dut.rst, byte_size=32)
            self.mon = AxiStreamMasterMonitor(dut, dut.clk, dut.rst)
            self.in_beats = 0
            self.out_open = 0  # output beats since the last TLAST
            self.cycle = 0
            self.last_in_cycle = None  # cycle of the last input beat
            self.close_cycle = None  # first cycle with closing high
            cocotb.start_soon(self._monitor())

        async def _monitor(self):
            dut = self.dut
            while True:
                await RisingEdge(dut.clk)
                self.cycle += 1
                if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
                    self.in_beats += 1
                    self.last_in_cycle = self.cycle
                if dut.closing.value and self.close_cycle is None:
                    self.close_cycle = self.cycle
                if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
                    self.out_open = 0 if dut.m_axis_tlast.value else self.out_open + 1

        def set_idle_generator(self, generator=None):
            if generator:
                self.source.set_pause_generator(generator())

        def set_backpressure_generator(self, generator=None):
            if generator:
                self.sink.set_pause_generator(generator())

        async def reset(self):
            self.dut.rst.setimmediatevalue(0)
            await ClockCycles(self.dut.clk, 2)
            self.dut.rst.value = 1
            await ClockCycles(self.dut.clk, 2)
            self.dut.rst.value = 0
            await ClockCycles(self.dut.clk, 2)

        async def recv(self) -> list[int]:
            frame = await with_timeout(self.sink.recv(), 200, "us")
            return [int(w) for w in frame.tdata]

        async def wait_in_beats(self, n):
            for _ in range(100_000):  # a hang guard only
                if self.in_beats >= n:
                    return
                await RisingEdge(self.dut.clk)
            raise AssertionError(f"{n} input beats never came ({self.in_beats})")

        def counters(self):
            d = self.dut
            return (int(d.frames_ok.value), int(d.frames_timeout.value),
                    int(d.frames_overlong.value), int(d.frames_error.value))

        async def settle(self):
            await self.source.wait()
            for _ in range(4 * TIMEOUT):
                await RisingEdge(self.dut.clk)
                if not (self.dut.msg_open.value or self.dut.closing.value
                        or self.dut.m_axis_tvalid.value):
                    break
            assert self.out_open == 0, "a frame left without TLAST"
            assert self.sink.empty()
            self.mon.check()

        async def pulse_soft_reset(self, cycles=1):
            """soft_reset high for ``cycles`` edges; returns the input beats taken meanwhile."""
            await FallingEdge(self.dut.clk)  # the monitors have seen the last rising edge
            before = self.in_beats
            self.dut.soft_reset.value = 1
            await ClockCycles(self.dut.clk, cycles)
            self.dut.soft_reset.value = 0
            await FallingEdge(self.dut.clk)
            return self.in_beats - before

        async def wait_for(self, signal):
            for _ in range(100_000):  # a hang guard only
                await FallingEdge(self.dut.clk)  # after the monitors saw the rising edge
                if signal.value:
                    return
            raise AssertionError(f"{signal._name} never rose")

    async def start(dut, idle_inserter, backpressure_inserter):
        return await paced(TB(dut), idle_inserter, backpressure_inserter)
