"""cocotb tests of zybo_z7/rtl/wq_frame_guard.v's framing, and the pytest wrappers that run
them: whole messages pass; an over-long one is cut at MAX_WORDS, a stalled one closed after
the timeout (not under backpressure), each with the guard's ERROR tail.

soft_reset and a changed timeout are in test_wq_frame_guard_control.py; the bench is
frame_guard_bench.py.
"""
from __future__ import annotations

import random

import pytest

try:
    import cocotb
    from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
    from cocotbext.axi import AxiStreamFrame
except ImportError:  # collected by pytest without cocotb: the wrapper skips
    cocotb = None

from protocol import stream as S
from zybo_z7 import csr_map
from frame_guard_bench import MAX_WORDS, TIMEOUT, expected_close, message

if cocotb is not None:
    from frame_guard_bench import start
    from pauses import PAUSES, cycle_pause

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
