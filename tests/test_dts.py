"""The device tree overlay: preprocessed, compiled with dtc -@, decompiled, and checked
against the board facts, the block design's interrupt order and the driver's strings."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from zybo_z7 import board

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("cpp", "dtc", "fdtget")),
    reason="cpp, dtc or fdtget is missing (apt-get install cpp device-tree-compiler)")
ROOT = Path(__file__).resolve().parent.parent
DTSO = ROOT / "zybo_z7" / "dts" / "waferq-overlay.dtso"
BINDINGS = ROOT / "drivers" / "include" / "dt-bindings" / "waferq.h"
OVERLAY = "/fragment@0/__overlay__"
# dtc 1.6 checks phandles an overlay cannot resolve (&intc, &clkc live in the base tree) and
# looks into __local_fixups__; those warnings are expected, anything else is a fault.
EXPECTED = re.compile(r"Warning \((clocks_property|interrupts_property|dmas_property|"
                      r"unit_address_vs_reg)\): (/fragment@0/|/__local_fixups__/).*"
                      r"(phandle|interrupt-parent|no reg or ranges)")


@pytest.fixture(scope="module")
def dtbo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dts")
    board.write(tmp)
    dts = tmp / "waferq-overlay.dts"
    subprocess.run(["cpp", "-nostdinc", "-undef", "-x", "assembler-with-cpp", "-P",
                    "-I", str(ROOT / "drivers" / "include"), "-I", str(tmp), str(DTSO), "-o", str(dts)],
                   check=True)
    out = tmp / "waferq.dtbo"
    proc = subprocess.run(["dtc", "-@", "-I", "dts", "-O", "dtb", "-o", str(out), str(dts)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stderr


def _get(dtbo, node, prop, fmt="x"):
    out = subprocess.run(["fdtget", "-t", fmt, str(dtbo), f"{OVERLAY}/{node}", prop],
                         capture_output=True, text=True, check=True).stdout.split()
    return [int(v, 16) for v in out] if fmt == "x" else out


def _macro(name):
    return re.search(rf"#define\s+{name}\s+\"([^\"]+)\"", BINDINGS.read_text()).group(1)


def test_only_expected_warnings(dtbo):
    _, stderr = dtbo
    unexpected = [l for l in stderr.splitlines() if l.strip() and not EXPECTED.search(l)]
    assert not unexpected, unexpected


def test_decompiles(dtbo):
    out = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(dtbo[0])], capture_output=True,
                         text=True, check=True).stdout
    assert "__symbols__" in out and "axi_dma_0" in out and "__fixups__" in out


def test_dma_node(dtbo):
    b = board.load()
    dma = f"dma@{b.slaves['dma'].base:x}"
    assert _get(dtbo[0], dma, "compatible", "s") == ["xlnx,axi-dma-1.00.a"]
    assert _get(dtbo[0], dma, "reg") == [b.slaves["dma"].base, b.slaves["dma"].range]
    assert _get(dtbo[0], dma, "#dma-cells") == [1]
    assert _get(dtbo[0], dma, "xlnx,sg-length-width") == [b["dma"]["sg_length_width"]]
    subprocess.run(["fdtget", str(dtbo[0]), f"{OVERLAY}/{dma}", "xlnx,include-sg"], check=True)
    # the block design's concat order: IRQ_F2P[i] is order[i]
    order = b["irq"]["order"]
    want = [x for src in ("dma_mm2s", "dma_s2mm") for x in (0, b.dt_spi(src), 4)]
    assert _get(dtbo[0], dma, "interrupts") == want
    assert order.index("dma_mm2s") == 0 and order.index("dma_s2mm") == 1
    for ch, src in (("dma-mm2s-channel", "dma_mm2s"), ("dma-s2mm-channel", "dma_s2mm")):
        node = f"{dma}/{ch}"
        assert _get(dtbo[0], node, "compatible", "s") == [f"xlnx,axi-{ch}"]
        assert _get(dtbo[0], node, "interrupts") == [0, b.dt_spi(src), 4]
        assert _get(dtbo[0], node, "xlnx,datawidth") == [b["dma"]["data_width"]]


def test_accelerator_node(dtbo):
    b = board.load()
    acc = f"accel@{b.slaves['csr'].base:x}"
    assert _get(dtbo[0], acc, "compatible", "s") == [_macro("WAFERQ_COMPATIBLE")]
    assert _get(dtbo[0], acc, "dma-names", "s") == [_macro("WAFERQ_DMA_TX_NAME"),
                                                     _macro("WAFERQ_DMA_RX_NAME")]
    assert _get(dtbo[0], acc, "reg") == [b.slaves["csr"].base, b.slaves["csr"].range,
                                         b.slaves["hls_ctrl"].base, b.slaves["hls_ctrl"].range]
    dma_phandle = _get(dtbo[0], f"dma@{b.slaves['dma'].base:x}", "phandle")[0]
    assert _get(dtbo[0], acc, "dmas") == [dma_phandle, 0, dma_phandle, 1]
    assert _get(dtbo[0], acc, "interrupts") == [0, b.dt_spi("hls_core"), 4]


def test_driver_asks_for_these_names():
    src = (ROOT / "drivers" / "waferq" / "waferq_dma.c").read_text()
    assert "WAFERQ_DMA_TX_NAME" in src and "WAFERQ_DMA_RX_NAME" in src
