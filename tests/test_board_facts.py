"""Board facts: one source (contract/board.toml), checked, and nowhere else written."""
import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from contract import board as board_facts
from zybo_z7 import board

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "zybo_z7" / "vivado").glob("*.tcl"),
                  *(ROOT / "zybo_z7" / "dts").glob("*.dtso"),
                  *(ROOT / "zybo_z7" / "constraints").glob("*.xdc")])


def test_facts_load_and_derive():
    b = board_facts.load()
    assert b.part == "xc7z020clg400-1"
    assert b.fclk0_hz == 100_000_000
    assert b["dma"]["include_sg"] and b["dma"]["data_width"] == 32
    # IRQ_F2P[0] is GIC ID 61, which the DT writes as SPI 29
    first = b["irq"]["order"][0]
    assert (b.gic_id(first), b.dt_spi(first)) == (61, 29)
    assert b.ps7_config()["PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "100"
    assert b.ps7_config()["PCW_UART1_UART1_IO"] == "MIO 48 .. 49"
    # XC7Z020 (DS190 table 3): 53,200 LUT, 106,400 FF, 140 BRAM36 = 280 BRAM18, 220 DSP48E1;
    # the HLS estimator and the csr block's 1 s timeout read these, not copies.
    assert b.device == {"lut": 53_200, "ff": 106_400, "bram18": 280, "dsp": 220}
    from hls import estimate
    from zybo_z7 import csr_map
    assert estimate.DEVICE == b.device and estimate.clock_hz() == b.fclk0_hz
    assert csr_map.TIMEOUT_CYCLES_RESET == b.fclk0_hz


@pytest.mark.parametrize("edit, words", [
    (lambda r: r["address"]["csr"].update(base=0x40400000), "overlaps"),
    (lambda r: r["address"]["dma"].update(base=0x40408000), "divide base"),
    (lambda r: r["address"]["dma"].update(base=0x80000000), "outside the GP0 window"),
    (lambda r: r["dma"].update(sg_length_width=20), "largest message"),
    (lambda r: r["dma"].update(data_width=64), "32-bit words"),
    (lambda r: r["fifo"].update(rx_depth=1000), "power of two"),
    (lambda r: r["irq"].update(order=["dma_mm2s", "dma_mm2s", "hls_core"]), "once"),
    (lambda r: r["ps7"].update(PCW_USE_M_AXI_GP0="0"), "the design needs '1'"),
    (lambda r: r["ps7_extra"].update(PCW_UART0_PERIPHERAL_ENABLE="1"), "repeats a value"),
    (lambda r: r["device"].update(dsp=0), "device.dsp"),
])
def test_bad_facts_are_refused(edit, words):
    raw = copy.deepcopy(board_facts.load().raw)
    edit(raw)
    with pytest.raises(ValueError, match=words):
        board_facts.check(raw)


def _code(path: Path) -> str:
    """The file without comments (TCL/xdc '#', C-style in the overlay)."""
    text = path.read_text()
    if path.suffix == ".dtso":
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        return "\n".join(l.split("//")[0] for l in text.splitlines() if not l.startswith("#"))
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))


def test_no_board_fact_is_written_outside_board_toml():
    b = board_facts.load()
    numbers = {str(b["clocks"]["fclk0_mhz"]), str(b["dma"]["sg_length_width"]),
               str(b["fifo"]["rx_depth"]), str(b["fifo"]["tx_depth"]), str(b["guard"]["max_words"])}
    for src in b["irq"]["order"]:
        numbers |= {str(b.gic_id(src)), str(b.dt_spi(src))}
    assert SOURCES, "no TCL/DT sources found"
    for path in SOURCES:
        code = _code(path)
        assert not re.search(r"\b0x[0-9a-fA-F]+", code), f"{path.name}: a literal address"
        assert not re.search(r"@[0-9a-fA-F]{6,}\b", code), f"{path.name}: a literal unit address"
        assert "xc7z" not in code.lower(), f"{path.name}: the part is a board fact"
        assert not re.search(r"FREQMHZ\s+\S*\d", code), f"{path.name}: a literal clock"
        for n in numbers:
            assert not re.search(rf"(?<![\w.]){n}(?![\w.%])", code), f"{path.name}: literal {n}"


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed (apt-get install tcl)")
def test_generated_tcl_is_valid_tcl(tmp_path):
    facts, _ = board.write(tmp_path)
    out = subprocess.run(["tclsh"], input=f"source {facts}\nputs \"$wq_part $wq_addr_base(dma) "
                         "[llength $wq_ps7_config] [llength $wq_irq_order]\"\n",
                         capture_output=True, text=True, check=True).stdout.split()
    b = board_facts.load()
    assert out[0] == b.part and int(out[1], 16) == b.slaves["dma"].base
    assert int(out[2]) == 2 * len(b.ps7_config()) and int(out[3]) == len(b["irq"]["order"])


# Digilent's ps7 preset for the board, as facts (source in its header). The copy in
# tests/data is the one CI has; ../shared/boards holds the original.
PRESET = ROOT / "tests" / "data" / "zybo-z7-20-ps7-preset.txt"
SHARED_PRESET = ROOT.parent / "shared" / "boards" / "zybo-z7-20-ps7-preset.txt"


def _preset(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.partition(" ")
        out.append((name, value))
    return out


def test_ps7_table_is_the_board_preset_value_for_value():
    want = _preset(PRESET)
    assert len(want) == len(dict(want)) == 385
    got = list(board_facts.load()["ps7"].items())
    assert [k for k, _ in got] == [k for k, _ in want]  # same names, same order
    for (k, v), (_, w) in zip(got, want):
        assert isinstance(v, str) and v == w, f"{k}: board.toml {v!r}, preset {w!r}"
    cfg = board_facts.load().ps7_config()
    # the values the review found wrong or missing (PYNQ-Z1's 525 MHz DDR was one)
    assert cfg["PCW_UIPARAM_DDR_FREQ_MHZ"] == "533.333333"
    assert cfg["PCW_CRYSTAL_PERIPHERAL_FREQMHZ"] == "33.333333"
    assert cfg["PCW_DDR_RAM_HIGHADDR"] == "0x3FFFFFFF"
    assert cfg["PCW_UART0_PERIPHERAL_ENABLE"] == "0"
    assert all(cfg[k] == v for k, v in want)  # nothing derived overrides the preset


@pytest.mark.skipif(not SHARED_PRESET.is_file(), reason="no ../shared/boards checkout next to the repo")
def test_preset_copy_is_the_shared_original():
    assert PRESET.read_bytes() == SHARED_PRESET.read_bytes()
