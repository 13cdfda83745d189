"""The handshake pauses the cocotb benches run their traffic under.

cocotbext-axi holds a channel's valid (idle) or ready (backpressure) low while a
pause generator yields 1. Each bench runs its cases with no pause and with three
held cycles of every four, so every handshake is also seen stretched.
"""
from __future__ import annotations

import itertools


def cycle_pause():
    return itertools.cycle([1, 1, 1, 0])


PAUSES = dict(idle_inserter=[None, cycle_pause], backpressure_inserter=[None, cycle_pause])


async def paced(tb, idle_inserter, backpressure_inserter):
    """``tb`` reset, then its pauses set (a bench class with reset() and the two setters)."""
    await tb.reset()
    tb.set_idle_generator(idle_inserter)
    tb.set_backpressure_generator(backpressure_inserter)
    return tb
