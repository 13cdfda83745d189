"""Register map of the waferq PL glue (``wq_csr``) and the frame guard's error codes.

This module is the single place where every register, bit and guard constant is
named. It writes, at build time (never committed):

- ``wq_csr_map.vh``: Verilog ``localparam`` declarations, ``include``-d inside the
  module bodies of ``zybo_z7/rtl/wq_csr.v`` and ``wq_frame_guard.v``;
- ``wq_csr_map.h``: a C header for the driver (``WQ_CSR_*`` offsets, masks, resets).

    python -m zybo_z7.csr_map --out-dir build/rtl/include

All registers are 32 bits wide on an AXI4-Lite slave, little-endian, at word
offsets from the block's base address. Every access gets an OKAY response (a
SLVERR on the Zynq GP port would become a bus abort in the kernel): writes to
read-only registers are ignored and unmapped offsets read 0.

The guard's ERROR codes are ``protocol.stream.ERR_GUARD_*``: an ERROR reply
carrying one of them was written by the frame guard, not the core.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from contract import board
from protocol import stream as S

ADDR_WIDTH = 8  # AXI4-Lite address bits the block decodes (256-byte window)
DATA_WIDTH = 32
# Frame-guard stall timeout after reset: 1 s of the PL clock (FCLK_CLK0, board facts).
TIMEOUT_CYCLES_RESET = board.load().fclk0_hz
# Block version: [31:16] major, [15:0] minor.
CSR_VERSION = 0x0001_0000

# ERROR reply codes the frame guard writes (see wq_frame_guard.v for the closing
# tail); defined with the other stream error codes in protocol.stream.
GUARD_ERR_TIMEOUT = S.ERR_GUARD_TIMEOUT
GUARD_ERR_OVERLONG = S.ERR_GUARD_OVERLONG
GUARD_ERR_RESET = S.ERR_GUARD_RESET
GUARD_ERRORS = {c: S.ERRORS[c] for c in (GUARD_ERR_TIMEOUT, GUARD_ERR_OVERLONG, GUARD_ERR_RESET)}
GUARD_TAIL_WORDS = S.GUARD_TAIL_WORDS


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int = 1
    doc: str = ""

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str  # "RO" read-only, "RW" read/write (CONTROL: self-clearing command bits)
    reset: int
    doc: str
    fields: tuple[Field, ...] = field(default_factory=tuple)


REGISTERS: tuple[Register, ...] = (
    Register("VERSION", 0x00, "RO", CSR_VERSION, "block version, [31:16] major [15:0] minor"),
    Register("TOPOLOGY_HASH", 0x04, "RO", 0,
             "topology hash of the core the bitstream was built for (parameter; reset shows 0 "
             "only when the parameter is 0)"),
    Register("CONTROL", 0x08, "RW", 0, "self-clearing command bits", (
        Field("SOFT_RESET", 0, doc="write 1: pulse soft_reset for SOFT_RESET_CYCLES; reads 1 while "
              "the pulse lasts"),
        Field("CLEAR_COUNTERS", 1, doc="write 1: zero the FRAMES_* counters; reads 0"),
    )),
    Register("STATUS", 0x0C, "RO", 0, "frame guard state", (
        Field("MSG_OPEN", 0, doc="a message is open (passed words, no TLAST yet)"),
        Field("CLOSING", 1, doc="the guard is writing an ERROR tail"),
        Field("DROPPING", 2, doc="the guard discards the rest of a closed message"),
        Field("TIMEOUT_SEEN", 3, doc="FRAMES_TIMEOUT is not zero"),
        Field("OVERLONG_SEEN", 4, doc="FRAMES_OVERLONG is not zero"),
        Field("SOFT_RESET_ACTIVE", 5, doc="the soft-reset pulse is running"),
    )),
    Register("TIMEOUT_CYCLES", 0x10, "RW", TIMEOUT_CYCLES_RESET,
             "guard stall timeout in clock cycles of upstream idleness while ready; 0 disables"),
    Register("FRAMES_OK", 0x14, "RO", 0, "messages passed with their own TLAST (wraps)"),
    Register("FRAMES_TIMEOUT", 0x18, "RO", 0, "messages closed by the stall timeout (wraps)"),
    Register("FRAMES_OVERLONG", 0x1C, "RO", 0, "messages closed for reaching MAX_WORDS (wraps)"),
    Register("FRAMES_ERROR", 0x20, "RO", 0,
             "ERROR replies (opcode 0xFF) from the core passed intact (wraps)"),
    Register("MAX_WORDS", 0x24, "RO", 0, "the guard's MAX_WORDS parameter: longest message passed"),
    Register("SCRATCH", 0x28, "RW", 0, "free for software: bus sanity checks"),
)

BY_NAME = {r.name: r for r in REGISTERS}


def check() -> None:
    """Raise ValueError on overlapping offsets, bad alignment or overlapping fields."""
    seen = {}
    for r in REGISTERS:
        if r.offset % 4 or r.offset >= 1 << ADDR_WIDTH:
            raise ValueError(f"{r.name}: offset 0x{r.offset:x} is not word-aligned inside the window")
        if r.offset in seen:
            raise ValueError(f"{r.name} and {seen[r.offset]} share offset 0x{r.offset:x}")
        seen[r.offset] = r.name
        used = 0
        for f in r.fields:
            if f.mask & used or f.lsb + f.width > DATA_WIDTH:
                raise ValueError(f"{r.name}.{f.name} overlaps another field or leaves the word")
            used |= f.mask


def constants() -> dict[str, int]:
    """Every constant by its base name (without the WQ_ / WQ_CSR_ prefix)."""
    c = {"ADDR_WIDTH": ADDR_WIDTH}
    for r in REGISTERS:
        c[f"{r.name}_ADDR"] = r.offset
        c[f"{r.name}_RESET"] = r.reset
        for f in r.fields:
            c[f"{r.name}_{f.name}_BIT"] = f.lsb
            c[f"{r.name}_{f.name}_MASK"] = f.mask
    return c


def guard_constants() -> dict[str, int]:
    return {
        "MAGIC": S.MAGIC,
        "VERSION": S.VERSION,
        "OP_ERROR": S.OP_ERROR,
        "GUARD_ERR_TIMEOUT": GUARD_ERR_TIMEOUT,
        "GUARD_ERR_OVERLONG": GUARD_ERR_OVERLONG,
        "GUARD_ERR_RESET": GUARD_ERR_RESET,
        "GUARD_TAIL_WORDS": GUARD_TAIL_WORDS,
        # The synthesized guard's MAX_WORDS (board facts): what the MAX_WORDS
        # register reads; a stand-in for the PL must report the same.
        "GUARD_MAX_WORDS": board.load()["guard"]["max_words"],
    }


_BANNER = "Generated by zybo_z7/csr_map.py; do not edit, do not commit."


def verilog_header() -> str:
    check()
    lines = [f"// {_BANNER}", "// Include inside a module body: localparams only.",
             "/* verilator lint_off UNUSEDPARAM */"]
    for name, v in constants().items():
        lines.append(f"localparam [31:0] WQ_CSR_{name} = 32'h{v:08x};")
    for name, v in guard_constants().items():
        lines.append(f"localparam [31:0] WQ_{name} = 32'h{v:08x};")
    lines.append("/* verilator lint_on UNUSEDPARAM */")
    return "\n".join(lines) + "\n"


def c_header() -> str:
    check()
    lines = [f"/* {_BANNER} */", "#ifndef WQ_CSR_MAP_H", "#define WQ_CSR_MAP_H", ""]
    for r in REGISTERS:
        lines.append(f"/* {r.name} ({r.access}): {r.doc} */")
        lines.append(f"#define WQ_CSR_{r.name}_ADDR 0x{r.offset:02x}u")
        lines.append(f"#define WQ_CSR_{r.name}_RESET 0x{r.reset:08x}u")
        for f in r.fields:
            lines.append(f"#define WQ_CSR_{r.name}_{f.name}_BIT {f.lsb}u  /* {f.doc} */")
            lines.append(f"#define WQ_CSR_{r.name}_{f.name}_MASK 0x{f.mask:08x}u")
        lines.append("")
    lines.append(f"#define WQ_CSR_ADDR_WIDTH {ADDR_WIDTH}u")
    for name, v in guard_constants().items():
        if name.startswith("GUARD_"):
            lines.append(f"#define WQ_{name} {v}u")
    lines += ["", "#endif /* WQ_CSR_MAP_H */", ""]
    return "\n".join(lines)


def write(out_dir) -> list[Path]:
    """Write both headers into out_dir (only when their text changed); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("wq_csr_map.vh", verilog_header()), ("wq_csr_map.h", c_header())):
        p = out / name
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
        paths.append(p)
    return paths


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default="build/rtl/include", help="where the headers go")
    args = ap.parse_args(argv)
    for p in write(args.out_dir):
        print(p)


if __name__ == "__main__":
    main()
