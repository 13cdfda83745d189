"""Board facts of the Zybo Z7-20 design, read from ``board.toml`` (their one source).

    python -m zybo_z7.board --out build/wmcnn_4w4a/bitstream [--model build/wmcnn_4w4a/export]

writes ``board_facts.tcl`` (``set wq_*`` variables that ``zybo_z7/vivado/*.tcl``
source) and ``waferq_board.dtsi`` (``#define WQ_*`` that ``zybo_z7/dts/waferq-overlay.dtso``
includes). With ``--model`` the TCL also carries the build's own facts: the topology
hash the CSR block reports, the HLS IP repository and the output folder.

Python users call ``load()`` and read the ``Board`` it returns.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from protocol import stream as S

BOARD_TOML = Path(__file__).resolve().parent / "board.toml"
REPO = Path(__file__).resolve().parent.parent

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


def _tcl_word(v) -> str:
    s = str(v)
    if re.fullmatch(r"[A-Za-z0-9_.:/+-]+", s):
        return s
    if "{" in s or "}" in s or "\\" in s:
        raise ValueError(f"cannot quote {s!r} for TCL")
    return "{" + s + "}"


def model_facts(model_dir: Path, out_dir: Path) -> dict[str, str]:
    """Per-build facts: what the TCL needs besides the board."""
    meta = json.loads((model_dir / "model.json").read_text())
    hls_dir = model_dir.resolve().parent / "hls"
    return {
        "wq_topology_hash": f"0x{int(meta['topology_hash']) & 0xFFFFFFFF:08X}",
        "wq_out_dir": str(out_dir.resolve()),
        "wq_hls_ip_repo": str(hls_dir / "ip"),
        "wq_rtl_dir": str(REPO / "zybo_z7" / "rtl"),
        "wq_rtl_include_dir": str(out_dir.resolve() / "rtl_include"),
    }


def tcl(board: Board, extra: dict[str, str] | None = None) -> str:
    r = board.raw
    v = {
        "wq_part": r["board"]["part"],
        "wq_board_name": r["board"]["name"],
        "wq_fclk0_mhz": r["clocks"]["fclk0_mhz"],
        "wq_dma_data_width": r["dma"]["data_width"],
        "wq_dma_addr_width": r["dma"]["addr_width"],
        "wq_dma_include_sg": int(r["dma"]["include_sg"]),
        "wq_dma_sg_length_width": r["dma"]["sg_length_width"],
        "wq_dma_burst_size": r["dma"]["burst_size"],
        "wq_rx_fifo_depth": r["fifo"]["rx_depth"],
        "wq_tx_fifo_depth": r["fifo"]["tx_depth"],
        "wq_max_words": r["guard"]["max_words"],
        "wq_soft_reset_cycles": r["guard"]["soft_reset_cycles"],
        "wq_hls_vlnv": r["hls"]["vlnv"],
        "wq_board_part": r["board"]["board_part"],
    }
    lines = ["# Generated by zybo_z7/board.py from zybo_z7/board.toml: do not edit."]
    lines += [f"set {k} {_tcl_word(x)}" for k, x in v.items()]
    lines.append("set wq_irq_order [list " + " ".join(r["irq"]["order"]) + "]")
    for s in board.slaves.values():
        lines.append(f"set wq_addr_base({s.name}) 0x{s.base:08X}")
        lines.append(f"set wq_addr_range({s.name}) 0x{s.range:X}")
    ps7 = " \\\n    ".join(f"CONFIG.{k} {_tcl_word(x)}" for k, x in board.ps7_config().items())
    lines.append(f"set wq_ps7_config [list \\\n    {ps7} \\\n]")
    for k, x in (extra or {}).items():
        lines.append(f"set {k} {_tcl_word(x)}")
    return "\n".join(lines) + "\n"


def dtsi(board: Board, topology_hash: str | None = None) -> str:
    r = board.raw
    out = ["/* Generated by zybo_z7/board.py from zybo_z7/board.toml: do not edit. */",
           "#ifndef WQ_BOARD_DTSI", "#define WQ_BOARD_DTSI",
           # the kernel's dt-bindings are not on the include path (cpp -nostdinc)
           "#ifndef GIC_SPI", "#define GIC_SPI 0", "#endif",
           "#ifndef IRQ_TYPE_LEVEL_HIGH", "#define IRQ_TYPE_LEVEL_HIGH 4", "#endif"]
    for s in board.slaves.values():
        n = s.name.upper()
        out += [f"#define WQ_{n}_BASE 0x{s.base:08x}", f"#define WQ_{n}_RANGE 0x{s.range:x}",
                f"#define WQ_{n}_UNIT {s.base:x}"]
    for src in r["irq"]["order"]:
        out.append(f"#define WQ_IRQ_{src.upper()} {board.dt_spi(src)}"
                   f"  /* IRQ_F2P[{board.f2p_index(src)}], GIC ID {board.gic_id(src)} */")
    out += [f"#define WQ_DMA_DATA_WIDTH {r['dma']['data_width']}",
            f"#define WQ_DMA_ADDR_WIDTH {r['dma']['addr_width']}",
            f"#define WQ_DMA_SG_LENGTH_WIDTH {r['dma']['sg_length_width']}",
            f"#define WQ_FCLK0_CLKC {r['clocks']['fclk0_clkc_index']}",
            f"#define WQ_FCLK0_HZ {board.fclk0_hz}"]
    if topology_hash:
        out.append(f"#define WQ_TOPOLOGY_HASH {topology_hash}")
    out.append("#endif")
    return "\n".join(out) + "\n"


def write(out_dir, model_dir=None, board: Board | None = None) -> list[Path]:
    board = board or load()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = model_facts(Path(model_dir), out) if model_dir else None
    paths = [out / "board_facts.tcl", out / "waferq_board.dtsi"]
    paths[0].write_text(tcl(board, extra))
    paths[1].write_text(dtsi(board, extra["wq_topology_hash"] if extra else None))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for board_facts.tcl and waferq_board.dtsi")
    ap.add_argument("--model", default=None, help="export folder (model.json) for the build facts")
    args = ap.parse_args(argv)
    try:
        for p in write(args.out, args.model):
            print(p)
    except (ValueError, FileNotFoundError) as e:
        print(f"board facts: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
