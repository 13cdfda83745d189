"""Protocol monitors for the cocotb benches: they sample every rising edge and record every
breach of the AXI4-Lite (IHI 0022 A3) and AXI4-Stream (IHI 0051A 2.2, 2.7.2) rules they check.

They watch signals only; they drive nothing. ``errors`` is a list of strings; a test asserts
it is empty (``check()``), so a breach shows with its edge number.
"""
from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge


def _v(sig) -> int:
    """The value of a 1-bit or vector signal; X/Z is an error of its own."""
    value = sig.value
    if not value.is_resolvable:
        raise ValueError(f"{sig._name} is {value} (X or Z)")
    return int(value)


class _Monitor:
    def __init__(self, clk, reset=None, reset_active_level=True):
        self.clk = clk
        self.reset = reset
        self.reset_level = int(reset_active_level)
        self.errors: list[str] = []
        self.edge = 0
        self._prev_in_reset = False
        cocotb.start_soon(self._run())

    def in_reset(self) -> bool:
        return self.reset is not None and _v(self.reset) == self.reset_level

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"edge {self.edge}: {text}")

    def check(self) -> None:
        assert not self.errors, "\n".join(self.errors)

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.edge += 1
            try:
                in_reset = self.in_reset()
                self.sample(in_reset, self._prev_in_reset)
                self._prev_in_reset = in_reset
            except ValueError as e:  # X or Z on a sampled signal
                self.error(str(e))


class AxiLiteSlaveMonitor(_Monitor):
    """Checks an AXI4-Lite slave (prefix ``s_axil``) against its master:

    - BVALID only after both the AW and the W handshake of that write (A3.3.1);
    - RVALID only after the AR handshake of that read (A3.3.1);
    - BVALID/BRESP and RVALID/RDATA/RRESP held until their READY (A3.2.1);
    - BVALID and RVALID low at every edge after one where reset was sampled (A3.1.2).
    Handshakes are counted per channel; ``writes``/``reads`` count the responses.
    """

    def __init__(self, dut, clk, reset=None, reset_active_level=True, prefix="s_axil"):
        self.s = {n: getattr(dut, f"{prefix}_{n}") for n in (
            "awvalid", "awready", "wvalid", "wready", "bvalid", "bready", "bresp",
            "arvalid", "arready", "rvalid", "rready", "rdata", "rresp")}
        self.aw = self.w = self.b = self.ar = self.r = 0
        self.writes = self.reads = 0
        self._b_held = self._r_held = None  # (bresp,) / (rdata, rresp) while stalled
        super().__init__(clk, reset, reset_active_level)

    def sample(self, in_reset, prev_in_reset):
        s = {k: _v(v) for k, v in self.s.items()}
        if prev_in_reset and (s["bvalid"] or s["rvalid"]):
            self.error(f"BVALID={s['bvalid']} RVALID={s['rvalid']} after an edge in reset")
        if in_reset:
            self.aw = self.w = self.b = self.ar = self.r = 0
            self._b_held = self._r_held = None
            return
        # responses against handshakes completed at earlier edges
        if s["bvalid"] and not (self.aw > self.b and self.w > self.b):
            self.error(f"BVALID before the AW and W handshakes (aw={self.aw} w={self.w} "
                       f"b={self.b})")
        if s["rvalid"] and not self.ar > self.r:
            self.error(f"RVALID before the AR handshake (ar={self.ar} r={self.r})")
        if self._b_held is not None:
            if not s["bvalid"]:
                self.error("BVALID dropped before BREADY")
            elif (s["bresp"],) != self._b_held:
                self.error("BRESP changed while stalled")
        if self._r_held is not None:
            if not s["rvalid"]:
                self.error("RVALID dropped before RREADY")
            elif (s["rdata"], s["rresp"]) != self._r_held:
                self.error(f"RDATA changed while stalled: {self._r_held[0]:#x} -> "
                           f"{s['rdata']:#x}")
        self._b_held = (s["bresp"],) if s["bvalid"] and not s["bready"] else None
        self._r_held = (s["rdata"], s["rresp"]) if s["rvalid"] and not s["rready"] else None
        self.aw += s["awvalid"] and s["awready"]
        self.w += s["wvalid"] and s["wready"]
        self.ar += s["arvalid"] and s["arready"]
        if s["bvalid"] and s["bready"]:
            self.b += 1
            self.writes += 1
        if s["rvalid"] and s["rready"]:
            self.r += 1
            self.reads += 1


class AxiStreamMasterMonitor(_Monitor):
    """Checks an AXI4-Stream master output (prefix ``m_axis``) while its sink stalls:

    - once TVALID is high it stays high until TREADY (IHI 0051A 2.2.1);
    - TDATA and TLAST do not change while TVALID is high and TREADY low;
    - TVALID is low at every edge after one where reset was sampled (2.7.2).
    ``stalled`` counts the edges with TVALID high and TREADY low (so a test can show the
    check had something to check).
    """

    def __init__(self, dut, clk, reset=None, reset_active_level=True, prefix="m_axis"):
        self.s = {n: getattr(dut, f"{prefix}_{n}") for n in ("tvalid", "tready", "tdata", "tlast")}
        self._held = None
        self.stalled = 0
        self.beats = 0
        super().__init__(clk, reset, reset_active_level)

    def sample(self, in_reset, prev_in_reset):
        valid = _v(self.s["tvalid"])
        ready = _v(self.s["tready"])
        if prev_in_reset and valid:
            self.error("TVALID high after an edge in reset")
        if in_reset:
            self._held = None
            return
        word = (_v(self.s["tdata"]), _v(self.s["tlast"])) if valid else None
        if self._held is not None:
            if not valid:
                self.error("TVALID dropped before TREADY")
            elif word != self._held:
                self.error(f"TDATA/TLAST changed while stalled: {self._held} -> {word}")
        self._held = word if valid and not ready else None
        self.stalled += bool(valid and not ready)
        self.beats += bool(valid and ready)
