"""Board facts of the Zybo Z7-20 design, read from ``board.toml`` (their one source).

The board (part, PL clock, DMA, FIFOs, addresses, interrupts, PS7 preset) and the
device's resources (the XC7Z020's LUT, FF, BRAM18 and DSP48E1 counts) that the
HLS estimator, the Vivado TCL, the device tree, the PYNQ backend and the console
read. ``load()`` returns the checked ``Board``; ``zybo_z7/board.py`` writes the
TCL and DT include from it.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from protocol import stream as S

BOARD_TOML = Path(__file__).resolve().parent / "board.toml"

GP0_WINDOW = (0x4000_0000, 0x8000_0000)  # M_AXI_GP0 address window [lo, hi)
F2P_WIDTH = 16  # IRQ_F2P[15:0]
# Block-design cell interrupt pins, by the names board.toml's [irq] order uses.
IRQ_SOURCES = ("dma_mm2s", "dma_s2mm", "hls_core")


@dataclass(frozen=True)
class Slave:
    name: str
    base: int
    range: int


@dataclass(frozen=True)
class Board:
    raw: dict

    def __getitem__(self, key):
        return self.raw[key]

    @property
    def part(self) -> str:
        return self.raw["board"]["part"]

    @property
    def device(self) -> dict[str, int]:
        """The part's resources: {"lut", "ff", "bram18", "dsp"} (board.toml [device])."""
        d = self.raw["device"]
        return {"lut": d["lut"], "ff": d["ff"], "bram18": d["bram18"], "dsp": d["dsp"]}

    @property
    def fclk0_hz(self) -> int:
        return int(self.raw["clocks"]["fclk0_mhz"] * 1_000_000)

    @property
    def slaves(self) -> dict[str, Slave]:
        return {k: Slave(k, v["base"], v["range"]) for k, v in self.raw["address"].items()}

    def f2p_index(self, source: str) -> int:
        return self.raw["irq"]["order"].index(source)

    def gic_id(self, source: str) -> int:
        """GIC interrupt ID of an IRQ_F2P source (61..68, then 84..91)."""
        i, irq = self.f2p_index(source), self.raw["irq"]
        return irq["f2p_low_first_id"] + i if i < 8 else irq["f2p_high_first_id"] + i - 8

    def dt_spi(self, source: str) -> int:
        """The number the DT's ``interrupts = <GIC_SPI n ...>`` takes: ID - 32."""
        return self.gic_id(source) - self.raw["irq"]["gic_spi_first_id"]

    @property
    def max_transfer_bytes(self) -> int:
        return (1 << self.raw["dma"]["sg_length_width"]) - 1

    def ps7_config(self) -> dict[str, str]:
        """Every processing_system7 CONFIG.* value: Digilent's preset ([ps7]), our
        additions ([ps7_extra]), then the PL-facing ones derived from the design."""
        return ps7_config(self.raw)


def pl_facing_ps7(raw: dict) -> dict[str, str]:
    """The PS7 settings the PL design needs, derived from board.toml's tables."""
    return {
        "PCW_FPGA0_PERIPHERAL_FREQMHZ": f"{raw['clocks']['fclk0_mhz']}",
        "PCW_EN_CLK0_PORT": "1",
        "PCW_EN_RST0_PORT": "1",
        "PCW_USE_M_AXI_GP0": "1",
        "PCW_USE_S_AXI_HP0": "1",
        "PCW_USE_FABRIC_INTERRUPT": "1",
        "PCW_IRQ_F2P_INTR": "1",
    }


def ps7_config(raw: dict) -> dict[str, str]:
    cfg = {k: str(v) for k, v in raw["ps7"].items()}
    cfg.update({k: str(v) for k, v in raw.get("ps7_extra", {}).items()})
    cfg.update(pl_facing_ps7(raw))
    return cfg


def check(raw: dict) -> None:
    """Raise ValueError naming the first fact that cannot work."""
    dma, irq = raw["dma"], raw["irq"]
    for name in ("lut", "ff", "bram18", "dsp"):
        if not isinstance(raw["device"].get(name), int) or raw["device"][name] <= 0:
            raise ValueError(f"device.{name} must be a positive count of the part's resources")
    if dma["data_width"] != 32:
        raise ValueError(f"dma.data_width {dma['data_width']}: the stream protocol moves 32-bit words")
    need = 4 * S.MAX_MESSAGE_WORDS
    if (1 << dma["sg_length_width"]) - 1 < need:
        raise ValueError(f"dma.sg_length_width {dma['sg_length_width']} cannot describe the "
                         f"largest message ({need} bytes)")
    for name in ("rx_depth", "tx_depth"):
        d = raw["fifo"][name]
        if d < 16 or d > 32768 or d & (d - 1):
            raise ValueError(f"fifo.{name} {d} is not a power of two in 16..32768")
    if raw["guard"]["max_words"] < 4:
        raise ValueError("guard.max_words must be at least 4, the shortest message")
    spans = []
    for name, s in raw["address"].items():
        base, rng = s["base"], s["range"]
        if rng < 0x1000 or rng & (rng - 1) or base % rng:
            raise ValueError(f"address.{name}: range 0x{rng:x} must be a power of two >= 4K "
                             f"and divide base 0x{base:x}")
        if not (GP0_WINDOW[0] <= base and base + rng <= GP0_WINDOW[1]):
            raise ValueError(f"address.{name}: 0x{base:x} is outside the GP0 window")
        for other, lo, hi in spans:
            if base < hi and lo < base + rng:
                raise ValueError(f"address.{name} overlaps address.{other}")
        spans.append((name, base, base + rng))
    if sorted(irq["order"]) != sorted(IRQ_SOURCES) or len(irq["order"]) > F2P_WIDTH:
        raise ValueError(f"irq.order must name each of {IRQ_SOURCES} once")
    preset, extra = raw["ps7"], raw.get("ps7_extra", {})
    for k in extra:
        if k in preset:
            raise ValueError(f"ps7_extra.{k} repeats a value of the preset table [ps7]")
    for k, v in pl_facing_ps7(raw).items():
        for table, values in (("ps7", preset), ("ps7_extra", extra)):
            if k in values and str(values[k]) != v:
                raise ValueError(f"{table}.{k} = {values[k]!r}, but the design needs {v!r}")


def load(path: str | Path = BOARD_TOML) -> Board:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    check(raw)
    return Board(raw)
