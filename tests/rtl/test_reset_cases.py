"""Cut messages and the CSR soft reset, in cocotb on the RTL glue (wq_glue_top.v).

The glue is real RTL; what the block design puts around it is modelled in
Python, each model named for what it stands in for:

- ``RxFifo``: the axis_data_fifo between the DMA's MM2S and the core. Its
  s_axis_aresetn is the glue's core_rst_n (block_design.tcl), so it empties
  while core_rst_n is low.
- ``CoreModel``: the HLS core (hls/templates/wq_core.h), one word a cycle.
  Replies come from hls.refcore.RefCore, the C++ core's golden model; the two
  streaming behaviours RefCore cannot show are modelled as the C++ has them:
  a LOAD_WEIGHTS that will write the weight memories clears weights_loaded
  when its length word is in, and ap_rst_n (core_rst_n) drops the message in
  progress and, with ``#pragma HLS reset variable=state``, clears the state.
- ``TxFifo``: the axis_data_fifo between the glue's m_axis and the DMA's S2MM,
  also reset by core_rst_n, not ready while in reset.

The cases are the issue's: a LOAD_WEIGHTS cut by an abort followed by INFER
gets ERROR NO_WEIGHTS, and an INFER cut by an abort followed by a new request
gets that request's own reply. A reply cut by the reset leaves one frame
closed by the guard's RESET tail with the old tag, which the driver drops.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster
except ImportError:  # collected by pytest without cocotb: the wrapper skips
    cocotb = None

from protocol import pixels as PX
from protocol import stream as S
from zybo_z7 import csr_map as M

SOFT_RESET_CYCLES = 8
MAX_WORDS = 64


def _spec():
    from contract.spec import CNNSpec

    return CNNSpec.uniform(4, 4, in_size=8, channels=(2, 3))


if cocotb is not None:

    class RxFifo:
        """Stand-in for rx_fifo (axis_data_fifo): words the DMA has written."""
        def __init__(self):
            self.words = collections.deque()   # (data, last)

        def push_message(self, words, cut_at=None):
            words = [int(w) for w in words]
            n = len(words) if cut_at is None else cut_at
            for i, w in enumerate(words[:n]):
                self.words.append((w, cut_at is None and i == n - 1))

    class CoreModel:
        """Stand-in for the HLS core, streaming as wq_core.h does."""
        def __init__(self, dut, rx: RxFifo, reset_state: bool):
            from hls.refcore import RefCore
            from contract import blob

            self.dut, self.rx, self.reset_state = dut, rx, reset_state
            self.ref = RefCore(_spec())
            self.blob_words = blob.blob_words(self.ref.layers)
            self.msg: list[int] = []
            self.reply: collections.deque = collections.deque()   # (word, last)
            self.consumed = 0
            dut.s_axis_tvalid.value = 0
            dut.s_axis_tdata.value = 0
            dut.s_axis_tlast.value = 0

        def _reset(self):
            self.msg.clear()
            self.reply.clear()
            self.rx.words.clear()          # rx_fifo is reset by core_rst_n too
            if self.reset_state:
                self.ref._invalidate()     # #pragma HLS reset variable=state

        def _take(self, word: int, last: bool):
            self.msg.append(word)
            self.consumed += 1
            if len(self.msg) == 2:
                head, length = self.msg
                if (head >> 16 == S.MAGIC and (head >> 8) & 0xFF == S.VERSION
                        and head & 0xFF == S.OP_LOAD_WEIGHTS and length == self.blob_words):
                    self.ref._invalidate()  # the memories change from the next word on
            if last:
                words = [int(w) for w in self.ref.handle(np.array(self.msg, np.uint32))]
                self.reply.extend((w, i == len(words) - 1) for i, w in enumerate(words))
                self.msg = []

        async def run(self):
            d = self.dut
            while True:
                await RisingEdge(d.aclk)
                if not d.core_rst_n.value:
                    self._reset()
                    d.s_axis_tvalid.value = 0
                    continue
                if d.s_axis_tvalid.value and d.s_axis_tready.value:
                    self.reply.popleft()
                if self.reply:
                    d.s_axis_tdata.value, last = self.reply[0]
                    d.s_axis_tlast.value = int(last)   # TLAST on each reply's checksum word
                    d.s_axis_tvalid.value = 1
                else:
                    d.s_axis_tvalid.value = 0
                    if self.rx.words:
                        self._take(*self.rx.words.popleft())

    class TxFifo:
        """Stand-in for tx_fifo (axis_data_fifo) and the DMA's S2MM: whole frames."""
        def __init__(self, dut):
            self.dut = dut
            self.frames: collections.deque = collections.deque()
            self.current: list[int] = []
            self.hold_after = None   # stop taking words after this many of a frame (backpressure)
            dut.m_axis_tready.value = 0

        async def run(self):
            d = self.dut
            while True:
                await RisingEdge(d.aclk)
                if not d.core_rst_n.value:
                    self.frames.clear()
                    self.current = []
                    d.m_axis_tready.value = 0   # not ready while in reset
                    continue
                if d.m_axis_tvalid.value and d.m_axis_tready.value:
                    self.current.append(int(d.m_axis_tdata.value))
                    if d.m_axis_tlast.value:
                        self.frames.append(self.current)
                        self.current = []
                d.m_axis_tready.value = int(self.hold_after is None
                                            or len(self.current) < self.hold_after)

        async def recv(self) -> list[int]:
            async def wait():
                while not self.frames:
                    await RisingEdge(self.dut.aclk)
            await with_timeout(wait(), 200, "us")
            return self.frames.popleft()

    class TB:
        def __init__(self, dut, reset_state: bool):
            self.dut = dut
            cocotb.start_soon(Clock(dut.aclk, 10, unit="ns").start())
            self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.aclk,
                                      reset=dut.aresetn, reset_active_level=False)
            self.rx = RxFifo()
            self.core = CoreModel(dut, self.rx, reset_state)
            self.tx = TxFifo(dut)

        async def start(self):
            d = self.dut
            d.aresetn.value = 0
            await ClockCycles(d.aclk, 4)
            d.aresetn.value = 1
            await ClockCycles(d.aclk, 4)
            cocotb.start_soon(self.core.run())
            cocotb.start_soon(self.tx.run())

        async def transact(self, words) -> list[int]:
            self.rx.push_message(words)
            return await self.tx.recv()

        async def cut(self, words, keep: int):
            """The DMA's MM2S stops after ``keep`` words (an abort); the core takes them."""
            target = self.core.consumed + keep
            self.rx.push_message(words, cut_at=keep)
            while self.core.consumed < target:
                await RisingEdge(self.dut.aclk)
            await ClockCycles(self.dut.aclk, 4)

        async def soft_reset(self):
            ctl = M.BY_NAME["CONTROL"]
            soft = next(f for f in ctl.fields if f.name == "SOFT_RESET")
            await self.axil.write_dword(ctl.offset, soft.mask)
            while not self.dut.core_rst_n.value:
                await RisingEdge(self.dut.aclk)
            await ClockCycles(self.dut.aclk, SOFT_RESET_CYCLES + 4)

    def _models():
        from contract import blob
        from contract.intmodel import random_model

        spec = _spec()
        return spec, random_model(spec, seed=1), random_model(spec, seed=2), blob

    async def _cut_load_then_infer(dut, reset_state):
        spec, model, other, blob = _models()
        tb = TB(dut, reset_state)
        await tb.start()
        rng = np.random.default_rng(3)
        image = rng.integers(0, 256, (spec.in_size, spec.in_size, spec.in_channels), dtype=np.uint8)
        load = S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 1)
        reply = S.raise_if_error(S.decode(np.array(await tb.transact(load), np.uint32)))
        assert reply.opcode == S.OP_LOAD_WEIGHTS | S.REPLY_BIT
        infer = S.encode(S.OP_INFER, PX.pack_pixels(image), 2)
        good = await tb.transact(infer)
        assert S.decode(np.array(good, np.uint32)).opcode == S.OP_INFER | S.REPLY_BIT

        cut = S.encode(S.OP_LOAD_WEIGHTS, blob.pack(other), 3)
        await tb.cut(cut, len(cut) // 2)
        await tb.soft_reset()
        got = S.decode(np.array(await tb.transact(S.encode(S.OP_INFER, PX.pack_pixels(image), 4)),
                                np.uint32))
        assert got.opcode == S.OP_ERROR and got.tag == 4, got
        assert int(got.payload[0]) == S.ERR_NO_WEIGHTS
        # a whole load afterwards gives the first reply's logits again
        await tb.transact(load)
        again = await tb.transact(infer)
        assert again == good

    async def _cut_infer_then_new_request(dut, keep):
        spec, model, _, blob = _models()
        tb = TB(dut, reset_state=True)
        await tb.start()
        rng = np.random.default_rng(4)
        img = lambda: rng.integers(0, 256, (spec.in_size, spec.in_size, spec.in_channels),  # noqa: E731
                                   dtype=np.uint8)
        await tb.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 1))
        cut = S.encode(S.OP_INFER, PX.pack_pixels(img()), 5)
        await tb.cut(cut, keep)
        await tb.soft_reset()
        q = S.decode(np.array(await tb.transact(S.encode(S.OP_QUERY, [], 6)), np.uint32))
        assert q.opcode == S.OP_QUERY | S.REPLY_BIT and q.tag == 6, q
        assert S.parse_query(q)["weights_loaded"] == 0  # the reset cleared the core's state
        assert not tb.tx.frames  # nothing of the cut message is left anywhere

    async def _cut_reply_then_new_request(dut):
        """A reply cut by the soft reset leaves the TX side one frame that the
        guard closed with its RESET tail (the guard always ends a frame, so the
        S2MM transfer completes). The recovery the driver runs
        (waferq_core_reset: SOFT_RESET, then wait until STATUS shows the guard
        idle) leaves at most that one frame; it carries the cut request's tag
        and the driver's receive drops it (reply tag != request tag). Then the
        next request gets its own reply."""
        spec, model, _, blob = _models()
        tb = TB(dut, reset_state=True)
        await tb.start()
        await tb.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), 1))
        image = np.zeros((spec.in_size, spec.in_size, spec.in_channels), np.uint8)
        tb.tx.hold_after = 4   # the S2MM side stalls 4 words into the INFER reply
        tb.rx.push_message(S.encode(S.OP_INFER, PX.pack_pixels(image), 7))
        while len(tb.tx.current) < 4:
            await RisingEdge(dut.aclk)
        await tb.soft_reset()
        tb.tx.hold_after = None
        status = M.BY_NAME["STATUS"]
        busy = sum(f.mask for f in status.fields if f.name in ("MSG_OPEN", "CLOSING", "DROPPING"))
        for _ in range(1000):   # what waferq_core_reset polls
            if not int(await tb.axil.read_dword(status.offset)) & busy:
                break
        else:
            raise AssertionError("the frame guard stays busy after the soft reset")
        stale = list(tb.tx.frames)
        assert len(stale) <= 1, [[hex(w) for w in f] for f in stale]
        for f in stale:    # a whole frame, ending in the guard's RESET tail with the old tag
            tail = S.decode(np.array(f[-S.GUARD_TAIL_WORDS:], np.uint32))
            assert tail.opcode == S.OP_ERROR and tail.tag == 7, tail
            assert int(tail.payload[0]) == S.ERR_GUARD_RESET
        tb.tx.frames.clear()   # the driver's receive drops them by their tag
        q = S.decode(np.array(await tb.transact(S.encode(S.OP_QUERY, [], 8)), np.uint32))
        assert q.opcode == S.OP_QUERY | S.REPLY_BIT and q.tag == 8, q
        assert not tb.tx.frames

    @cocotb.test()
    async def run_cut_reply_then_new_request(dut):
        """A reply cut by the soft reset: one guard-closed frame with the old tag at
        most, then the new request's own reply."""
        await _cut_reply_then_new_request(dut)

    @cocotb.test()
    @cocotb.parametrize(reset_state=[True, False])
    async def run_cut_load_then_infer(dut, reset_state=True):
        """A LOAD cut halfway, the soft reset, then INFER: ERROR NO_WEIGHTS. Also when
        the core's statics survive ap_rst_n (reset_state False)."""
        await _cut_load_then_infer(dut, reset_state)

    @cocotb.test()
    @cocotb.parametrize(keep=[2, 7])
    async def run_cut_infer_then_new_request(dut, keep=2):
        """An INFER cut in its header or payload, the soft reset, then QUERY: the
        QUERY's own reply, and nothing else queued."""
        await _cut_infer_then_new_request(dut, keep)


@pytest.mark.rtl_sim
@pytest.mark.parametrize("sim", ["icarus"])
def test_reset_cases(sim, monkeypatch):
    from rtl_sim import run

    run(sim, "wq_glue_top", "test_reset_cases",
        ["wq_frame_guard.v", "wq_csr.v", "wq_glue_top.v"],
        parameters={"MAX_WORDS": MAX_WORDS, "SOFT_RESET_CYCLES": SOFT_RESET_CYCLES},
        monkeypatch=monkeypatch)
