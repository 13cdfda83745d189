"""cocotb tests of zybo_z7/rtl/wq_csr.v against zybo_z7/csr_map.py, and the pytest wrapper.

Offsets, reset values and bit positions come from csr_map (Python); the RTL reads
them from the generated wq_csr_map.vh, so these tests also check the generator.
"""
from __future__ import annotations

import pytest

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
    from cocotbext.axi import AxiLiteBus, AxiLiteMaster

    from axi_checks import AxiLiteSlaveMonitor
    from pauses import PAUSES, paced
except ImportError:  # collected by pytest without cocotb: the wrapper skips
    cocotb = None

from zybo_z7 import csr_map as M

TOPOLOGY_HASH = 0x1234ABCD
MAX_WORDS = 4096
SOFT_RESET_CYCLES = 5
R = M.BY_NAME


def addr(name: str) -> int:
    return R[name].offset


def bit(reg: str, field: str) -> int:
    return next(f.mask for f in R[reg].fields if f.name == field)


if cocotb is not None:

    class TB:
        def __init__(self, dut, master=True):
            self.dut = dut
            cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start(start_high=False))
            # without the cocotbext master the test drives the bus itself
            self.axil = (AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
                         if master else None)
            self.mon = AxiLiteSlaveMonitor(dut, dut.clk, dut.rst)
            for name in ("frames_ok", "frames_timeout", "frames_overlong", "frames_error",
                         "msg_open", "closing", "dropping"):
                getattr(dut, name).value = 0
            self.soft_reset_cycles = 0
            self.clear_cycles = 0
            cocotb.start_soon(self._monitor())

        async def _monitor(self):
            while True:
                await RisingEdge(self.dut.clk)
                self.soft_reset_cycles += int(self.dut.soft_reset.value)
                self.clear_cycles += int(self.dut.counters_clear.value)

        def set_idle_generator(self, generator=None):
            if generator:
                self.axil.write_if.aw_channel.set_pause_generator(generator())
                self.axil.write_if.w_channel.set_pause_generator(generator())
                self.axil.read_if.ar_channel.set_pause_generator(generator())

        def set_backpressure_generator(self, generator=None):
            if generator:
                self.axil.write_if.b_channel.set_pause_generator(generator())
                self.axil.read_if.r_channel.set_pause_generator(generator())

        async def reset(self):
            self.dut.rst.setimmediatevalue(0)
            await ClockCycles(self.dut.clk, 2)
            self.dut.rst.value = 1
            await ClockCycles(self.dut.clk, 2)
            self.dut.rst.value = 0
            await ClockCycles(self.dut.clk, 2)

        async def read(self, name: str) -> int:
            return await self.axil.read_dword(addr(name))

        async def write(self, name: str, value: int) -> None:
            await self.axil.write_dword(addr(name), value)

    async def start(dut, idle_inserter, backpressure_inserter):
        return await paced(TB(dut), idle_inserter, backpressure_inserter)

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_reset_values(dut, idle_inserter=None, backpressure_inserter=None):
        """Every register reads its csr_map reset value (parameters where the map says so)."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        expect = {r.name: r.reset for r in M.REGISTERS}
        expect["TOPOLOGY_HASH"] = TOPOLOGY_HASH
        expect["MAX_WORDS"] = MAX_WORDS
        for r in M.REGISTERS:
            assert await tb.read(r.name) == expect[r.name], r.name
        assert int(dut.timeout_cycles.value) == M.TIMEOUT_CYCLES_RESET
        # unmapped offsets read 0 and take writes without effect
        unmapped = max(r.offset for r in M.REGISTERS) + 4
        await tb.axil.write_dword(unmapped, 0xFFFFFFFF)
        assert await tb.axil.read_dword(unmapped) == 0
        tb.mon.check()

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_read_write(dut, idle_inserter=None, backpressure_inserter=None):
        """RW registers keep what is written, byte strobes included; RO registers ignore writes."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        for value in (0xDEADBEEF, 0, 0x00C0FFEE):
            await tb.write("SCRATCH", value)
            assert await tb.read("SCRATCH") == value
        await tb.write("TIMEOUT_CYCLES", 1234)
        assert await tb.read("TIMEOUT_CYCLES") == 1234
        await RisingEdge(dut.clk)
        assert int(dut.timeout_cycles.value) == 1234
        # one byte at a time: wstrb selects the lane
        await tb.write("SCRATCH", 0x11223344)
        await tb.axil.write(addr("SCRATCH") + 2, b"\xAA")
        assert await tb.read("SCRATCH") == 0x11AA3344
        for r in M.REGISTERS:
            if r.access == "RO":
                before = await tb.read(r.name)
                await tb.write(r.name, ~before & 0xFFFFFFFF)
                assert await tb.read(r.name) == before, r.name
        # a reset restores the RW registers
        await tb.reset()
        assert await tb.read("TIMEOUT_CYCLES") == R["TIMEOUT_CYCLES"].reset
        assert await tb.read("SCRATCH") == R["SCRATCH"].reset
        tb.mon.check()

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_soft_reset(dut, idle_inserter=None, backpressure_inserter=None):
        """CONTROL.SOFT_RESET gives one SOFT_RESET_CYCLES pulse and reads 1 while it lasts;
        CONTROL.CLEAR_COUNTERS gives a one-cycle pulse."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        assert tb.soft_reset_cycles == 0
        await tb.write("CONTROL", bit("CONTROL", "SOFT_RESET"))
        # the pulse starts on the write; read while it is still running when reads are quick
        control = await tb.read("CONTROL")
        if idle_inserter is None and backpressure_inserter is None:
            assert control & bit("CONTROL", "SOFT_RESET")
        await ClockCycles(dut.clk, SOFT_RESET_CYCLES + 2)
        assert tb.soft_reset_cycles == SOFT_RESET_CYCLES
        assert await tb.read("CONTROL") == 0
        assert await tb.read("STATUS") == 0
        await tb.write("CONTROL", bit("CONTROL", "CLEAR_COUNTERS"))
        await ClockCycles(dut.clk, 2)
        assert tb.clear_cycles == 1 and tb.soft_reset_cycles == SOFT_RESET_CYCLES
        assert await tb.read("CONTROL") == 0
        # both at once
        await tb.write("CONTROL", bit("CONTROL", "SOFT_RESET") | bit("CONTROL", "CLEAR_COUNTERS"))
        status = await tb.read("STATUS")
        if idle_inserter is None and backpressure_inserter is None:
            assert status & bit("STATUS", "SOFT_RESET_ACTIVE")
        await ClockCycles(dut.clk, SOFT_RESET_CYCLES + 2)
        assert (tb.clear_cycles, tb.soft_reset_cycles) == (2, 2 * SOFT_RESET_CYCLES)
        tb.mon.check()

    @cocotb.test()
    @cocotb.parametrize(**PAUSES)
    async def run_test_counters_status(dut, idle_inserter=None, backpressure_inserter=None):
        """Counter inputs and guard state reach FRAMES_* and STATUS at the mapped bits."""
        tb = await start(dut, idle_inserter, backpressure_inserter)
        values = {"FRAMES_OK": 101, "FRAMES_TIMEOUT": 7, "FRAMES_OVERLONG": 3,
                  "FRAMES_ERROR": 0xFFFFFFFF}
        for name, v in values.items():
            getattr(dut, name.lower()).value = v
        await RisingEdge(dut.clk)
        for name, v in values.items():
            assert await tb.read(name) == v, name
        assert await tb.read("STATUS") == bit("STATUS", "TIMEOUT_SEEN") | bit("STATUS",
                                                                              "OVERLONG_SEEN")
        dut.frames_timeout.value = 0
        dut.frames_overlong.value = 0
        for sig, field in (("msg_open", "MSG_OPEN"), ("closing", "CLOSING"),
                           ("dropping", "DROPPING")):
            getattr(dut, sig).value = 1
            await RisingEdge(dut.clk)
            assert await tb.read("STATUS") == bit("STATUS", field), field
            getattr(dut, sig).value = 0
        tb.mon.check()

    # A hand-driven master: each channel on its own schedule, VALID held until READY.

    async def _channel(dut, clk, prefix, values, delay, hold_cycles=None):
        """Raise ``prefix``valid after ``delay`` edges with ``values`` on the payload; hold it
        until READY; return the edge count (from the start) of the handshake."""
        for _ in range(delay):
            await RisingEdge(clk)
        for name, v in values.items():
            getattr(dut, f"{prefix}{name}").value = v
        getattr(dut, f"{prefix}valid").value = 1
        n = delay
        while True:
            await RisingEdge(clk)
            n += 1
            if getattr(dut, f"{prefix}ready").value:
                getattr(dut, f"{prefix}valid").value = 0
                return n

    async def _response(dut, clk, prefix, stall):
        """READY low for ``stall`` edges after VALID rises, then high; the response beat."""
        ready = getattr(dut, f"{prefix}ready")
        valid = getattr(dut, f"{prefix}valid")
        ready.value = 0
        while True:
            await RisingEdge(clk)
            if valid.value:
                break
        for _ in range(stall):
            await RisingEdge(clk)
        ready.value = 1
        while True:
            await RisingEdge(clk)
            if valid.value:  # handshake at this edge (READY was high)
                ready.value = 0
                return

    def _idle_master(dut):
        for n in ("awvalid", "wvalid", "arvalid", "bready", "rready"):
            getattr(dut, f"s_axil_{n}").value = 0
        for n in ("awaddr", "awprot", "wdata", "wstrb", "araddr", "arprot"):
            getattr(dut, f"s_axil_{n}").value = 0

    async def raw_write(dut, address, data, aw_delay, w_delay, b_stall=0, strb=0xF):
        clk = dut.clk
        aw = cocotb.start_soon(_channel(dut, clk, "s_axil_aw", {"addr": address}, aw_delay))
        w = cocotb.start_soon(_channel(dut, clk, "s_axil_w", {"data": data, "strb": strb},
                                       w_delay))
        b = cocotb.start_soon(_response(dut, clk, "s_axil_b", b_stall))
        await with_timeout(b, 2, "us")
        return await aw, await w

    @cocotb.test()
    async def run_test_write_phases(dut):
        """AW and W in different cycles (either first), B held back: BVALID comes only after
        both handshakes, and the register takes the value on the handshake edge itself."""
        tb = TB(dut, master=False)
        _idle_master(dut)
        await tb.reset()
        changes = []  # edge numbers at which timeout_cycles was seen to change

        async def watch():
            edge = 0
            last = int(dut.timeout_cycles.value)
            while True:
                await RisingEdge(dut.clk)
                edge += 1
                if int(dut.timeout_cycles.value) != last:
                    last = int(dut.timeout_cycles.value)
                    changes.append(edge)
        value = 100
        for aw_delay, w_delay, b_stall in ((0, 4, 0), (4, 0, 3), (0, 0, 0), (2, 7, 5), (6, 1, 1)):
            value += 1
            changes.clear()
            watcher = cocotb.start_soon(watch())
            aw_edge, w_edge = await raw_write(dut, addr("TIMEOUT_CYCLES"), value,
                                              aw_delay, w_delay, b_stall)
            await ClockCycles(dut.clk, 2)
            watcher.cancel()
            # the slave waits for both before taking either (the READYs rise together)
            assert aw_edge == w_edge, (aw_edge, w_edge)
            # the write lands on the handshake edge: the next edge samples the new value
            assert changes == [aw_edge + 1], (changes, aw_edge)
            assert int(dut.timeout_cycles.value) == value
        assert tb.mon.writes == 5 and tb.mon.aw == tb.mon.w == tb.mon.b == 5
        tb.mon.check()

    @cocotb.test()
    async def run_test_read_ordering(dut):
        """RVALID only after the AR handshake; RDATA held while RREADY is low; reads and
        writes interleaved on a hand-driven master."""
        tb = TB(dut, master=False)
        _idle_master(dut)
        await tb.reset()
        for i, (ar_delay, r_stall) in enumerate(((0, 0), (3, 4), (1, 9), (0, 2))):
            await raw_write(dut, addr("SCRATCH"), 0x5A000000 + i, i % 3, (i + 1) % 3)
            clk = dut.clk
            r = cocotb.start_soon(_response(dut, clk, "s_axil_r", r_stall))
            await _channel(dut, clk, "s_axil_ar", {"addr": addr("SCRATCH")}, ar_delay)
            assert not dut.s_axil_rvalid.value  # sampled on the AR handshake edge
            await with_timeout(r, 2, "us")
            assert int(dut.s_axil_rdata.value) == 0x5A000000 + i
        assert (tb.mon.reads, tb.mon.writes) == (4, 4)
        tb.mon.check()


@pytest.mark.rtl_sim
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_wq_csr(sim, monkeypatch):
    from rtl_sim import run

    run(sim, "wq_csr", "test_wq_csr", ["wq_csr.v"],
        parameters={"TOPOLOGY_HASH": TOPOLOGY_HASH, "MAX_WORDS": MAX_WORDS,
                    "SOFT_RESET_CYCLES": SOFT_RESET_CYCLES}, monkeypatch=monkeypatch)
