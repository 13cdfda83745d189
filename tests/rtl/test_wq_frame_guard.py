"""cocotb tests of zybo_z7/rtl/wq_frame_guard.v, and the pytest wrapper that runs them.

Words travel as whole 32-bit "bytes" (byte_size=32), so a frame is a list of words.
"""
from __future__ import annotations

import itertools
import os
import random

import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout
    from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

    from axi_checks import AxiStreamMasterMonitor
except ImportError:  # collected by pytest without cocotb: the wrapper skips
    cocotb = None

from protocol import stream as S
from zybo_z7 import csr_map

# small, so over-long frames are quick to make; the board's value (contract/board.toml)
# in test_wq_frame_guard_board_limit, which passes it through the environment
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

    def cycle_pause():
        return itertools.cycle([1, 1, 1, 0])

    PAUSES = dict(idle_inserter=[None, cycle_pause], backpressure_inserter=[None, cycle_pause])

    async def start(dut, idle_inserter, backpressure_inserter):
        tb = TB(dut)
        await tb.reset()
        tb.set_idle_generator(idle_inserter)
        tb.set_backpressure_generator(backpressure_inserter)
        return tb

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_pass(dut, idle_inserter=None, backpressure_inserter=None):
        """Well-formed messages of every length up to MAX_WORDS pass unchanged."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        rng = random.Random(1)
        msgs = [message(rng, n) for n in range(MAX_WORDS - 3)]
        msgs.append([int(w) for w in S.encode(S.OP_ERROR, [S.ERR_BAD_LENGTH, 9], 5)])
        msgs.append([0x12345678])  # one word with TLAST: not a protocol message, still a frame
        for m in msgs:
            await tb.source.send(AxiStreamFrame(m))
        for m in msgs:
            assert await tb.recv() == m
        await tb.settle()
        assert tb.counters() == (len(msgs), 0, 0, 1)

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_overlong(dut, idle_inserter=None, backpressure_inserter=None):
        """A message past MAX_WORDS is cut after MAX_WORDS words, closed, and its rest dropped."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        rng = random.Random(2)
        good = message(rng, 3)
        for long_payload in (MAX_WORDS - 3, MAX_WORDS + 5, 3 * MAX_WORDS):
            long = message(rng, long_payload)
            await tb.source.send(AxiStreamFrame(long))
            await tb.source.send(AxiStreamFrame(good))
            assert await tb.recv() == expected_close(long, MAX_WORDS, csr_map.GUARD_ERR_OVERLONG)
            assert await tb.recv() == good
        # exactly MAX_WORDS words with TLAST is still fine
        edge = message(rng, MAX_WORDS - 4)
        await tb.source.send(AxiStreamFrame(edge))
        assert await tb.recv() == edge
        await tb.settle()
        assert tb.counters() == (4, 0, 3, 0)
        # the tail alone decodes as a well-formed ERROR reply
        closed = expected_close(long, MAX_WORDS, csr_map.GUARD_ERR_OVERLONG)
        msg = S.decode(closed[-csr_map.GUARD_TAIL_WORDS:])
        assert (msg.opcode, list(msg.payload)) == (S.OP_ERROR, [csr_map.GUARD_ERR_OVERLONG, MAX_WORDS])

    @cocotb.test()
    async def run_test_batch_reply(dut):
        """The longest INFER_BATCH reply of the 9-class 42x42 wafer-map CNN this MAX_WORDS
        allows (hls/batch.py) passes whole; a reply one record longer is cut at MAX_WORDS."""
        from hls import batch

        tb = await start(dut, None, None)
        rng = random.Random(3)
        rec = S.record_words(9)
        n = batch.max_batch(9, 0, 42 * 42, guard_words=MAX_WORDS)
        assert S.HEADER_WORDS + n * rec + S.TRAILER_WORDS <= MAX_WORDS < \
            S.HEADER_WORDS + (2 * n + 1) * rec + S.TRAILER_WORDS
        longest = message(rng, n * rec, S.OP_INFER_BATCH | S.REPLY_BIT)
        await tb.source.send(AxiStreamFrame(longest))
        frame = await with_timeout(tb.sink.recv(), 2, "ms")
        assert [int(w) for w in frame.tdata] == longest
        k = (MAX_WORDS - S.HEADER_WORDS - S.TRAILER_WORDS) // rec + 1  # records past the limit
        too_long = message(rng, k * rec, S.OP_INFER_BATCH | S.REPLY_BIT)
        await tb.source.send(AxiStreamFrame(too_long))
        frame = await with_timeout(tb.sink.recv(), 2, "ms")
        assert [int(w) for w in frame.tdata] == expected_close(too_long, MAX_WORDS, csr_map.GUARD_ERR_OVERLONG)
        await tb.settle()
        assert tb.counters() == (1, 0, 1, 0)

    async def stall_after(tb, n_before, k, cycles):
        """Hold the source for ``cycles`` once ``n_before + k`` input beats were taken."""
        gen = tb.source._pause_generator
        await tb.wait_in_beats(n_before + k)
        tb.source.clear_pause_generator()
        tb.source.pause = True
        await ClockCycles(tb.dut.clk, cycles)
        tb.source.pause = False
        if gen is not None:
            tb.source.set_pause_generator(gen)

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_stall(dut, idle_inserter=None, backpressure_inserter=None):
        """A message stalled mid-way is closed after TIMEOUT; its late rest is dropped; later
        messages pass."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        rng = random.Random(3)
        n_in = 0
        for k in (1, 2, 3, 7):
            stalled = message(rng, 8)
            after = message(rng, 2)
            await tb.source.send(AxiStreamFrame(stalled))
            await tb.source.send(AxiStreamFrame(after))
            await stall_after(tb, n_in, k, 4 * TIMEOUT)
            out = await tb.recv()
            got_k = len(out) - csr_map.GUARD_TAIL_WORDS
            assert got_k >= k  # the pause lands a word or two late under random idles
            assert out == expected_close(stalled, got_k, csr_map.GUARD_ERR_TIMEOUT)
            assert await tb.recv() == after
            n_in += len(stalled) + len(after)
        await tb.settle()
        assert tb.counters() == (4, 4, 0, 0)

    @cocotb.test()
    async def run_test_stall_exact(dut):
        """The close comes exactly TIMEOUT idle cycles after the last word, while the upstream
        is still silent; the late rest is then dropped up to its TLAST."""
        tb = await start(dut, None, None)
        msg = message(random.Random(4), 4)
        tb.source.pause = False
        await tb.source.send(AxiStreamFrame(msg))
        await tb.wait_in_beats(3)
        tb.source.pause = True
        while tb.close_cycle is None:
            await RisingEdge(dut.clk)
        # closing is sampled one edge after the TIMEOUT-th idle edge
        assert tb.close_cycle - tb.last_in_cycle == TIMEOUT + 1
        out = await tb.recv()
        k = len(out) - csr_map.GUARD_TAIL_WORDS
        assert out == expected_close(msg, k, csr_map.GUARD_ERR_TIMEOUT)
        assert int(dut.dropping.value) == 1
        tb.source.pause = False  # the rest arrives and is dropped up to TLAST
        await tb.settle()
        assert int(dut.dropping.value) == 0
        assert tb.counters() == (0, 1, 0, 0)

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_backpressure_is_not_stall(dut, idle_inserter=None,
                                                 backpressure_inserter=None):
        """Downstream holding tready low for 10x TIMEOUT never closes a message."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        rng = random.Random(5)
        msgs = [message(rng, 6) for _ in range(3)]
        gen = tb.sink._pause_generator
        tb.sink.clear_pause_generator()
        for m in msgs:
            tb.sink.pause = True
            await tb.source.send(AxiStreamFrame(m))
            await ClockCycles(dut.clk, 10 * TIMEOUT)
            tb.sink.pause = False
            assert await tb.recv() == m
        if gen is not None:
            tb.sink.set_pause_generator(gen)
        await tb.settle()
        assert tb.counters() == (3, 0, 0, 0)

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

    def garbage_pauses(seed):
        def gen():
            rng = random.Random(seed)
            while True:
                r = rng.random()
                if r < 0.01:
                    yield from [1] * rng.randint(TIMEOUT // 2, 2 * TIMEOUT)
                else:
                    yield int(r < 0.3)
        return gen

    @cocotb.test()
    @cocotb.parametrize(backpressure_inserter=[None, cycle_pause])
    async def run_test_garbage(dut, backpressure_inserter=None):
        """Random words with random TLAST and random stalls: every output frame ends with
        TLAST and is an input message, or its prefix plus the guard tail."""
        tb = await start(dut, garbage_pauses(7), backpressure_inserter)
        rng = random.Random(8)
        msgs = [[rng.getrandbits(32) for _ in range(rng.randint(1, 2 * MAX_WORDS))]
                for _ in range(60)]
        for m in msgs:
            await tb.source.send(AxiStreamFrame(m))
        await tb.source.wait()
        for _ in range(4 * TIMEOUT):  # a stalled last message must be closed too
            await RisingEdge(dut.clk)
        frames = []
        while not tb.sink.empty():
            frames.append([int(w) for w in tb.sink.recv_nowait().tdata])
        assert tb.out_open == 0, "a frame left without TLAST"
        tb.mon.check()
        assert tb.mon.stalled > 0 or backpressure_inserter is None
        n_ok = n_timeout = n_overlong = 0
        assert len(frames) == len(msgs)
        for m, out in zip(msgs, frames):
            if out == m and len(m) <= MAX_WORDS:
                n_ok += 1
                continue
            k = len(out) - csr_map.GUARD_TAIL_WORDS
            code = out[-3]
            assert code in (csr_map.GUARD_ERR_TIMEOUT, csr_map.GUARD_ERR_OVERLONG), out
            assert out == expected_close(m, k, code)
            if code == csr_map.GUARD_ERR_OVERLONG:
                assert k == MAX_WORDS
                n_overlong += 1
            else:
                n_timeout += 1
        assert n_timeout > 0 and n_overlong > 0 and n_ok > 0
        assert tb.counters()[:3] == (n_ok, n_timeout, n_overlong)

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
def test_wq_frame_guard(sim, monkeypatch):
    from rtl_sim import run

    run(sim, "wq_frame_guard", "test_wq_frame_guard", ["wq_frame_guard.v"],
        parameters={"MAX_WORDS": MAX_WORDS}, monkeypatch=monkeypatch)


@pytest.mark.rtl_sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_wq_frame_guard_board_limit(sim, monkeypatch):
    """The guard at the board's MAX_WORDS passes the largest INFER_BATCH reply."""
    from contract import board
    from rtl_sim import run

    words = board.load()["guard"]["max_words"]
    run(sim, "wq_frame_guard", "test_wq_frame_guard", ["wq_frame_guard.v"],
        parameters={"MAX_WORDS": words}, extra_env={"WQ_GUARD_MAX_WORDS": str(words)},
        testcase="run_test_batch_reply", monkeypatch=monkeypatch)
