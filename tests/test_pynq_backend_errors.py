"""PynqBackend's errors and recovery on the simulated Zynq of test_pynq_backend.py.

A hung core, DMA errors, requests it refuses and exceptions while a transfer is set up:
each raises, and the next message still gets its own reply.
"""
from __future__ import annotations

import numpy as np
import pytest

from protocol import stream as S
from contract import board as board_facts
from zybo_z7 import pynq_backend as PB
from pynq_helpers import MARKS, MODES, backend, load_weights, query_ok
from pynq_helpers import board, built  # noqa: F401 - the simulated board's fixtures
from pynq_sim.axi_dma import RESET

pytestmark = MARKS


# --- recovery: defect 2 (simple mode stayed stopped) and the reset itself ------------------------
@pytest.mark.parametrize("board", MODES, indirect=True)
def test_hung_core_then_recovery(board):
    be = backend(board, timeout=0.2)
    query_ok(be)
    board.core.hang_next = True
    resets = board.dma.resets
    with pytest.raises(TimeoutError, match=r"DMA receive did not finish within 0.2 s: DMASR"):
        be.transact(S.encode(S.OP_QUERY, [], 20))
    # the abort's reset, then the drain's (it found the TX FIFO empty and disarmed)
    assert board.dma.resets == resets + 2 and board.csr.soft_resets == 1
    assert board.core.reset_count == 1 and board.core.auto_restart  # restarted after ap_rst_n
    assert be.drained == 0
    query_ok(be, tag=21)
    be.close()


@pytest.mark.parametrize("board", MODES, indirect=True)
def test_core_hung_mid_reply_then_recovery(board):
    """The core stops after 5 reply words: the receive waits for a TLAST that never comes.
    The soft reset makes the frame guard close that reply with a RESET tail, which lands in
    the TX FIFO after the DMA reset; the drain takes it, so the next reply is the next
    request's."""
    be = backend(board, timeout=0.2)
    board.core.hang_after = 5
    with pytest.raises(TimeoutError, match="DMA receive did not finish"):
        be.transact(S.encode(S.OP_QUERY, [], 22))
    assert board.csr.reset_closes == 1 and be.drained == 1
    tail = S.decode(np.array(be.rx_buf[:S.GUARD_TAIL_WORDS]))  # what the drain took
    assert (tail.opcode, tail.tag, list(tail.payload)) == (S.OP_ERROR, 22, [S.ERR_GUARD_RESET, 5])
    query_ok(be, tag=23)
    be.close()


@pytest.mark.parametrize("board", MODES, indirect=True)
@pytest.mark.parametrize("channel,error", [("MM2S", "DMASlvErr"), ("MM2S", "DMADecErr"),
                                           ("S2MM", "DMASlvErr"), ("S2MM", "DMADecErr")])
def test_dma_error_then_recovery(board, channel, error):
    """An MM2S error stops the request before the core; an S2MM error stops the reply
    after its first word, and the rest of it stays in the TX FIFO, which no reset
    empties: the abort drains it, so the next reply is the next request's."""
    be = backend(board)
    query_ok(be)
    board.dma.inject(channel, error)
    what = "send" if channel == "MM2S" else "receive"
    with pytest.raises(RuntimeError, match=rf"DMA {what} failed: DMASR .*{error}"):
        be.transact(S.encode(S.OP_QUERY, [], 30))
    assert be.drained == (channel == "S2MM") and not board.fabric.tx_fifo
    query_ok(be, tag=31)
    load_weights(be, board.model)
    be.close()


def test_receive_error_in_the_descriptor_status(board):
    """An S2MM slave error: DMASR says so, and so does the descriptor's status word."""
    be = backend(board)
    board.dma.inject("S2MM", "DMASlvErr")
    with pytest.raises(RuntimeError, match="DMA receive failed: .*DMASlvErr"):
        be.transact(S.encode(S.OP_QUERY, [], 40))
    desc, status = next((d, st) for ch, d, st in board.dma.status_log if ch == "S2MM")
    assert desc == be.rx_desc.physical_address
    assert status & PB.DESC_SLV_ERR and not status & PB.DESC_CMPLT
    assert be.drained == 1  # the rest of that reply, from the TX FIFO
    query_ok(be)


def test_abort_waits_for_the_reset_to_finish(board):
    be = backend(board)
    board.dma.reset_reads = 5
    be._abort()
    log = board.windows[board_facts.load()["address"]["dma"]["base"]][1].log
    dmacr_reads = [v for op, off, v in log if op == "r" and off == PB.MM2S_DMACR]
    assert [bool(v & RESET) for v in dmacr_reads[-6:]] == [True] * 5 + [False]


# --- defect 3: an exception outside the wait left the receive armed ----------------------------
@pytest.mark.parametrize("board", MODES, indirect=True)
@pytest.mark.parametrize("n_words", [0, 1, 3])
def test_request_under_four_words(board, n_words):
    be = backend(board)
    before = len(board.windows[board_facts.load()["address"]["dma"]["base"]][1].log)
    with pytest.raises(ValueError, match=r"a request of \d+ bytes is not a message"):
        be.transact(np.ones(n_words, np.uint32))
    assert len(board.windows[board_facts.load()["address"]["dma"]["base"]][1].log) == before
    query_ok(be)
    be.close()


@pytest.mark.parametrize("board", MODES, indirect=True)
def test_send_raises_after_the_receive_is_armed(board):
    be = backend(board)
    real = be.dma.sendchannel.transfer

    def broken(*a, **kw):
        assert not board.dma.s2mm.dmasr & 1, "the receive is armed (running) now"
        raise OSError("send failed")
    be.dma.sendchannel.transfer = broken
    with pytest.raises(OSError, match="send failed"):
        be.transact(S.encode(S.OP_QUERY, [], 50))
    be.dma.sendchannel.transfer = real
    query_ok(be, tag=51)
    be.close()
