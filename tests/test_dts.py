"""The device tree overlay: preprocessed, compiled with dtc -@, decompiled, and checked
against the board facts, the block design's interrupt order, the binding and the driver."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from contract import board as board_facts
from zybo_z7 import board

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("cpp", "dtc", "fdtget")),
    reason="cpp, dtc or fdtget is missing (apt-get install cpp device-tree-compiler)")
ROOT = Path(__file__).resolve().parent.parent
DTSO = ROOT / "zybo_z7" / "dts" / "waferq-overlay.dtso"
BINDINGS = ROOT / "drivers" / "include" / "dt-bindings" / "waferq.h"
DRIVER_H = ROOT / "drivers" / "waferq" / "waferq.h"
YAML = ROOT / "drivers" / "dt-bindings" / "waferq,accel.yaml"
OVERLAY = "/fragment@0/__overlay__"
# dtc 1.6 checks phandles an overlay cannot resolve (&intc, &clkc live in the base tree) and
# looks into __local_fixups__; those warnings are expected, anything else is a fault.
EXPECTED = re.compile(r"Warning \((clocks_property|interrupts_property|dmas_property|"
                      r"unit_address_vs_reg)\): (/fragment@0/|/__local_fixups__/).*"
                      r"(phandle|interrupt-parent|no reg or ranges)"
                      # the fragment node stands in for the target's parent (zynq-7000.dtsi's
                      # root: one address cell, as the region), which dtc cannot see
                      r"|Warning \(dma_ranges_format\): /fragment@0/__overlay__:dma-ranges: "
                      r"empty \"dma-ranges\" property but its #address-cells \(1\) differs "
                      r"from /fragment@0 \(2\)$")


def _compile(tmp, model_dir=None):
    board.write(tmp, model_dir)
    dts = tmp / "waferq-overlay.dts"
    subprocess.run(["cpp", "-nostdinc", "-undef", "-x", "assembler-with-cpp", "-P",
                    "-I", str(ROOT / "drivers" / "include"), "-I", str(tmp), str(DTSO), "-o", str(dts)],
                   check=True)
    out = tmp / "waferq.dtbo"
    proc = subprocess.run(["dtc", "-@", "-I", "dts", "-O", "dtb", "-o", str(out), str(dts)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stderr


@pytest.fixture(scope="module")
def dtbo(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("dts"))


def _get(dtbo, node, prop, fmt="x"):
    out = subprocess.run(["fdtget", "-t", fmt, str(dtbo), f"{OVERLAY}/{node}", prop],
                         capture_output=True, text=True, check=True).stdout.split()
    return [int(v, 16) for v in out] if fmt == "x" else out


def _macro(name, path=DRIVER_H):
    return re.search(rf"#define\s+{name}\s+\"([^\"]+)\"", path.read_text()).group(1)


def test_only_expected_warnings(dtbo):
    _, stderr = dtbo
    unexpected = [l for l in stderr.splitlines() if l.strip() and not EXPECTED.search(l)]
    assert not unexpected, unexpected


def test_decompiles(dtbo):
    out = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(dtbo[0])], capture_output=True,
                         text=True, check=True).stdout
    assert "__symbols__" in out and "axi_dma_0" in out and "__fixups__" in out
    # the fragment targets the fpga-region, which programs the PL first (defect 7)
    assert re.search(r"fpga_full = \"/fragment@0:target:0\"", out), out


def test_region_names_the_bitstream(dtbo):
    out = subprocess.run(["fdtget", "-t", "s", str(dtbo[0]), OVERLAY, "firmware-name"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["waferq.bit.bin"]


def test_dma_node(dtbo):
    b = board_facts.load()
    dma = f"dma@{b.slaves['dma'].base:x}"
    assert _get(dtbo[0], dma, "compatible", "s") == ["xlnx,axi-dma-1.00.a"]
    assert _get(dtbo[0], dma, "reg") == [b.slaves["dma"].base, b.slaves["dma"].range]
    assert _get(dtbo[0], dma, "#dma-cells") == [1]
    assert _get(dtbo[0], dma, "xlnx,sg-length-width") == [b["dma"]["sg_length_width"]]
    subprocess.run(["fdtget", str(dtbo[0]), f"{OVERLAY}/{dma}", "xlnx,include-sg"], check=True)
    # the DMA's parent bus (the region) carries its dma-ranges: 1:1
    subprocess.run(["fdtget", str(dtbo[0]), OVERLAY, "dma-ranges"], check=True)
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
    b = board_facts.load()
    acc = f"accel@{b.slaves['csr'].base:x}"
    assert _get(dtbo[0], acc, "compatible", "s") == [_macro("WAFERQ_COMPATIBLE")]
    assert _get(dtbo[0], acc, "dma-names", "s") == [_macro("WAFERQ_DMA_TX_NAME"),
                                                     _macro("WAFERQ_DMA_RX_NAME")]
    assert _get(dtbo[0], acc, "reg") == [b.slaves["csr"].base, b.slaves["csr"].range,
                                         b.slaves["hls_ctrl"].base, b.slaves["hls_ctrl"].range]
    dma_phandle = _get(dtbo[0], f"dma@{b.slaves['dma'].base:x}", "phandle")[0]
    assert _get(dtbo[0], acc, "dmas") == [dma_phandle, 0, dma_phandle, 1]
    assert _get(dtbo[0], acc, "interrupts") == [0, b.dt_spi("hls_core"), 4]
    # without a model there is no topology hash to check against
    p = subprocess.run(["fdtget", str(dtbo[0]), f"{OVERLAY}/{acc}", "waferq,topology-hash"],
                       capture_output=True, text=True)
    assert p.returncode != 0


def test_model_build_carries_the_topology_hash(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text('{"topology_hash": 3735928559}')
    out, _ = _compile(tmp_path, model)
    b = board_facts.load()
    assert _get(out, f"accel@{b.slaves['csr'].base:x}", "waferq,topology-hash") == [0xDEADBEEF]


def test_binding_and_header_agree_with_the_driver():
    """The binding YAML names the driver's compatible and properties; the dt-bindings
    header holds numbers only."""
    yaml_text = YAML.read_text()
    assert _macro("WAFERQ_COMPATIBLE") in yaml_text
    assert _macro("WAFERQ_TOPOLOGY_PROP") in yaml_text
    for name in ("WAFERQ_DMA_TX_NAME", "WAFERQ_DMA_RX_NAME"):
        assert f"- const: {_macro(name)}" in yaml_text
    defines = re.findall(r"#define[ \t]+\w+[ \t]+(.*)", BINDINGS.read_text())
    assert defines and all(re.fullmatch(r"\d+\s*(/\*.*\*/)?", d.strip()) for d in defines), defines
    prefixes = (ROOT / "drivers" / "dt-bindings" / "vendor-prefixes.yaml").read_text()
    assert '"^waferq,.*":' in prefixes


def test_driver_asks_for_these_names():
    src = (ROOT / "drivers" / "waferq" / "waferq_chan.c").read_text()   # dma_request_chan
    assert "WAFERQ_DMA_TX_NAME" in src and "WAFERQ_DMA_RX_NAME" in src
