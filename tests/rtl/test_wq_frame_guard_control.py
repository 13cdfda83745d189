"""cocotb tests of zybo_z7/rtl/wq_frame_guard.v's control inputs, and the pytest wrapper
that runs them: soft_reset on an open message, while a tail is written, while the rest of a
closed message is dropped, and held long; counters_clear; timeout_cycles changed while a
message is open.

The bench is frame_guard_bench.py, shared with test_wq_frame_guard.py.
"""
from __future__ import annotations

import itertools
import random

import pytest

try:
    import cocotb
    from cocotb.triggers import ClockCycles, RisingEdge
    from cocotbext.axi import AxiStreamFrame
except ImportError:  # collected by pytest without cocotb: the wrapper skips
    cocotb = None

from zybo_z7 import csr_map
from frame_guard_bench import MAX_WORDS, TIMEOUT, expected_close, message

if cocotb is not None:
    from frame_guard_bench import start
    from pauses import PAUSES

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_soft_reset(dut, idle_inserter=None, backpressure_inserter=None):
        """soft_reset closes an open message with code RESET; the next words are a new message."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        dut.timeout_cycles.value = 0  # disabled: only the reset may close
        rng = random.Random(6)
        msg = message(rng, 6)
        await tb.source.send(AxiStreamFrame(msg))
        gen = tb.source._pause_generator
        await tb.wait_in_beats(4)
        tb.source.clear_pause_generator()
        tb.source.pause = True
        await ClockCycles(dut.clk, 3 * TIMEOUT)  # no timeout: disabled
        assert int(dut.msg_open.value) == 1
        k = tb.in_beats
        dut.soft_reset.value = 1
        await RisingEdge(dut.clk)
        dut.soft_reset.value = 0
        out = await tb.recv()
        assert out == expected_close(msg, k, csr_map.GUARD_ERR_RESET)
        tb.source.pause = False
        if gen is not None:
            tb.source.set_pause_generator(gen)
        assert await tb.recv() == msg[k:]
        await tb.settle()
        assert tb.counters() == (1, 0, 0, 0)
        dut.counters_clear.value = 1
        await RisingEdge(dut.clk)
        dut.counters_clear.value = 0
        await RisingEdge(dut.clk)
        assert tb.counters() == (0, 0, 0, 0)

    async def timeout_close(tb, msg, k):
        """Send ``msg``, hold the source after ``k`` words (or one more: the pause lands on
        the next edge) until the guard is closing; returns the number of words taken."""
        tb.source.pause = False
        await tb.source.send(AxiStreamFrame(msg))
        await tb.wait_in_beats(k)
        tb.source.pause = True
        await tb.wait_for(tb.dut.closing)
        return tb.in_beats

    @cocotb.test()
    @cocotb.parametrize(stalled_sink=[False, True])
    async def run_test_soft_reset_in_tail(dut, stalled_sink=False):
        """A soft_reset while a TIMEOUT tail is written: the tail is finished unchanged, and
        the discarding is skipped, so the rest the upstream sends is a new message."""
        tb = await start(dut, None, None)
        msg = message(random.Random(20), 8)
        k = await timeout_close(tb, msg, 3)
        tb.sink.pause = stalled_sink  # a stalled sink keeps the guard in its tail longer
        assert await tb.pulse_soft_reset(2) == 0
        assert int(dut.closing.value) == 1  # still writing the tail
        tb.sink.pause = False
        assert await tb.recv() == expected_close(msg, k, csr_map.GUARD_ERR_TIMEOUT)
        assert int(dut.dropping.value) == 0
        tb.source.pause = False
        assert await tb.recv() == msg[k:]
        await tb.settle()
        assert tb.counters() == (1, 1, 0, 0)
        assert tb.mon.stalled > 0 or not stalled_sink

    @cocotb.test()
    async def run_test_soft_reset_in_drop(dut):
        """A soft_reset while the rest of a closed message is discarded stops the discarding:
        no word is taken during the pulse and the words after it pass as a new message."""
        tb = await start(dut, None, None)
        msg = message(random.Random(21), 10)
        k = await timeout_close(tb, msg, 3)
        await tb.wait_for(dut.dropping)
        tb.source.set_pause_generator(itertools.cycle([0, 1, 1]))  # slow: a word in three
        tb.source.pause = False
        await tb.wait_in_beats(k + 3)  # three words dropped
        assert int(dut.dropping.value) == 1
        assert await tb.pulse_soft_reset(1) == 0
        n = tb.in_beats
        assert n < len(msg)
        assert await tb.recv() == expected_close(msg, k, csr_map.GUARD_ERR_TIMEOUT)
        assert await tb.recv() == msg[n:]
        await tb.settle()
        assert tb.counters() == (1, 1, 0, 0)

    @cocotb.test()
    async def run_test_long_soft_reset_one_tail(dut):
        """One long soft_reset pulse while the upstream keeps offering words gives exactly one
        RESET tail: no word is taken while the pulse lasts (IHI 0051A 2.7.2 lets a core in
        reset send nothing; the guard does not count on it)."""
        tb = await start(dut, None, None)
        dut.timeout_cycles.value = 0
        msg = message(random.Random(22), 12)
        await tb.source.send(AxiStreamFrame(msg))
        await tb.wait_in_beats(4)
        assert await tb.pulse_soft_reset(5 * csr_map.GUARD_TAIL_WORDS) == 0
        k = tb.in_beats
        assert await tb.recv() == expected_close(msg, k, csr_map.GUARD_ERR_RESET)
        assert await tb.recv() == msg[k:]  # the rest, as a new message
        await tb.settle()
        assert tb.counters() == (1, 0, 0, 0)

    @cocotb.test()
    async def run_test_timeout_changed(dut):
        """timeout_cycles changed while a message is open: 0 stops the idle count; a value
        below the count reached closes on the next idle cycle."""
        tb = await start(dut, None, None)
        dut.timeout_cycles.value = 0
        tb.close_cycle = None  # from here on
        msg = message(random.Random(23), 6)
        tb.source.pause = False
        await tb.source.send(AxiStreamFrame(msg))
        await tb.wait_in_beats(4)
        tb.source.pause = True
        await ClockCycles(dut.clk, 5 * TIMEOUT)
        assert int(dut.msg_open.value) == 1 and tb.close_cycle is None
        dut.timeout_cycles.value = 10 * TIMEOUT  # large: the count runs, nothing closes yet
        await ClockCycles(dut.clk, 2 * TIMEOUT)
        assert tb.close_cycle is None
        dut.timeout_cycles.value = TIMEOUT  # below the count reached: close at once
        set_cycle = tb.cycle
        await tb.wait_for(dut.closing)
        assert tb.cycle - set_cycle <= 3  # not TIMEOUT cycles: the count had passed it
        assert await tb.recv() == expected_close(msg, tb.in_beats, csr_map.GUARD_ERR_TIMEOUT)
        tb.source.pause = False
        await tb.settle()
        assert tb.counters() == (0, 1, 0, 0)



@pytest.mark.rtl_sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_wq_frame_guard_control(sim, monkeypatch):
    from rtl_sim import run

    run(sim, "wq_frame_guard", "test_wq_frame_guard_control", ["wq_frame_guard.v"],
        parameters={"MAX_WORDS": MAX_WORDS}, monkeypatch=monkeypatch)
