"""PynqBackend against pynq 4.0.0's own code on a simulated Zynq.

pynq's Overlay, .hwh parser, driver binding, ``DMA`` with ``_SGDMAChannel``/``_SDMAChannel``,
``DefaultIP``, ``MMIO`` and ``PynqBuffer`` all run as on the board; only what lies under
them is simulated (tests/pynq_sim): AXI DMA 7.1 registers and descriptors per PG021, the
HLS core's ap_ctrl_hs register file, the CSR soft reset and DDR behind the buffers. The
overlay's .hwh is tests/pynq_sim/waferq.hwh, checked here against block_design.tcl. The
C-simulated core (hls.csim) answers the messages.

The simulated board is pynq_helpers.py's; errors and recovery are in
test_pynq_backend_errors.py.
"""
from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract import board as board_facts
from zybo_z7 import pynq_backend as PB
from pynq_helpers import MARKS, MODES, SPEC, backend, image, load_weights, pynq, query_ok
from pynq_helpers import board, built  # noqa: F401 - the simulated board's fixtures
from pynq_sim import hwh as sim_hwh
from pynq_sim.device import bit_file

pytestmark = MARKS


# --- the fixture .hwh is the block design's ---------------------------------------------------
@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed (apt-get install tcl)")
def test_fixture_hwh_matches_block_design():
    design = sim_hwh.tcl_design()
    sim_hwh.check_fixture(sim_hwh.FIXTURE.read_text(), design)
    assert design.cells[PB.DMA_CELL] == PB.DMA_VLNV
    assert design.cells[PB.CORE_CELL] == board_facts.load()["hls"]["vlnv"]
    assert PB.CSR_CELL in design.cells
    # and the check is not empty: a renamed cell, another IP version or a moved slave fail it
    text = sim_hwh.FIXTURE.read_text()
    for old, new in (('INSTANCE="rx_fifo"', 'INSTANCE="rx_fifo_1"'),
                     ("xilinx.com:ip:axi_dma:7.1", "xilinx.com:ip:axi_dma:7.2"),
                     ('BASEVALUE="0x40400000"', 'BASEVALUE="0x40410000"')):
        with pytest.raises(AssertionError, match="does not match block_design.tcl"):
            sim_hwh.check_fixture(text.replace(old, new), design)


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed (apt-get install tcl)")
def test_one_dma_mode_everywhere(board):
    """board.toml, the block design, the device tree and the backend agree: SG."""
    from pathlib import Path
    facts = board_facts.load()
    assert facts["dma"]["include_sg"] is True
    assert sim_hwh.tcl_design().config[PB.DMA_CELL]["c_include_sg"] == "1"
    dtso = (Path(PB.__file__).parent / "dts" / "waferq-overlay.dtso").read_text()
    assert "xlnx,include-sg;" in dtso
    be = backend(board)
    assert be.sg and be.rx_desc is not None
    be.close()


def test_pynq_parses_the_fixture_as_the_block_design(board):
    ol = pynq.Overlay(str(board.bit), download=False)
    facts = board_facts.load()
    for cell, key in ((PB.DMA_CELL, "dma"), (PB.CSR_CELL, "csr"), (PB.CORE_CELL, "hls_ctrl")):
        assert ol.ip_dict[cell]["phys_addr"] == facts["address"][key]["base"]
        assert ol.ip_dict[cell]["addr_range"] == facts["address"][key]["range"]
    params = ol.ip_dict[PB.DMA_CELL]["parameters"]
    assert params["c_include_sg"] == str(int(facts["dma"]["include_sg"]))
    assert params["c_sg_length_width"] == str(facts["dma"]["sg_length_width"])


def test_pynqmetadata_has_no_zynq7_clock_rate():
    """Why the backend fills in the PL clock rates: on a .hwh Vivado wrote for a Zynq-7000
    (pynqmetadata's own PYNQ-Z2 test file), pynqmetadata 0.2.0 finds no FCLK rate, and
    Overlay.download() would call Clocks.set_pl_clk(clk_mhz=None)."""
    from pathlib import Path

    import pynqmetadata
    from pynqmetadata.frontends import Metadata
    from pynqmetadata.views.runtime import RuntimeMetadataParser
    vivado_hwh = Path(pynqmetadata.__file__).parent / "tests" / "hwhs" / "resizer.hwh"
    parser = RuntimeMetadataParser(Metadata(input=vivado_hwh))
    assert parser.clock_dict[0]["enable"] == 1 and parser.clock_dict[0]["frequency"] is None
    ps7 = next(d for d in parser.ip_dict.values() if "processing_system7" in d["type"])
    assert float(ps7["parameters"]["PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ"]) == 100.0


def test_fclk0_is_set_to_the_block_designs_rate(board):
    """On the Zybo's 33.333 MHz PS clock (IO PLL x30 = 1000 MHz); pynq's own rate-to-divisor
    code assumes 50 MHz and would give 1000/15 = 66.7 MHz."""
    be = backend(board)
    ctrl = int(board.slcr[0x170 // 4])  # FPGA0_CLK_CTRL: DIVISOR0 [13:8], DIVISOR1 [25:20]
    io_pll_mhz = 1000 / 30 * (int(board.slcr[0x108 // 4]) >> 12 & 0x7F)
    mhz = io_pll_mhz / ((ctrl >> 8 & 0x3F) * (ctrl >> 20 & 0x3F))
    assert round(mhz, 3) == board_facts.load()["clocks"]["fclk0_mhz"]
    be.close()


def test_pynq_binds_its_own_drivers(board):
    be = backend(board)
    assert type(be.dma) is pynq.lib.dma.DMA
    assert type(be.dma.sendchannel).__name__ == "_SGDMAChannel"
    assert type(be.core) is pynq.overlay.DefaultIP and type(be.csr) is pynq.overlay.DefaultIP
    assert board.downloads == ["waferq.bin"]  # the FPGA manager got the bitstream
    rx_buf = be.rx_buf.physical_address
    assert board.core.auto_restart and board.core.start  # ap_start | auto_restart
    be.close()
    assert rx_buf in board.ddr.unmapped and rx_buf not in board.ddr.live  # freed by munmap


def test_the_services_factory_makes_it(board):
    from zybo_z7.backends import make_backend
    be = make_backend("pynq", bitstream=str(board.bit), timeout=1.0)
    assert type(be) is PB.PynqBackend and be.timeout == 1.0
    query_ok(be)
    be.close()


# --- defect 1: every SG-mode receive timed out ------------------------------------------------
@pytest.mark.parametrize("board", MODES, indirect=True)
def test_query_load_infer(board):
    """Short replies (QUERY 14 words, LOAD_WEIGHTS) and the long one (INFER with the
    feature map), each shorter than the 16 KiB receive buffer."""
    be = backend(board)
    query = query_ok(be)
    assert S.parse_query(S.decode(query))["topology_hash"] == board.model.topology_hash
    load_weights(be, board.model)
    img = image()
    reply = be.transact(S.encode(S.OP_INFER, PX.pack_pixels(img), 11))
    msg = S.decode(reply)
    assert msg.tag == 11 and reply.size > 4 * query.size  # the long reply
    want_cls, want_logits = board.model.classify(img[None])
    n = len(SPEC.classes)
    assert msg.payload[0] == want_cls[0]  # bit-exact with the integer model
    assert np.array_equal(msg.payload[1:1 + n].view(np.int32), want_logits[0])
    assert 4 * reply.size < be.rx_buf.nbytes  # a reply shorter than the buffer
    # and again, in the other order, to see nothing is left armed or queued
    assert S.decode(be.transact(S.encode(S.OP_INFER, PX.pack_pixels(img), 12))).tag == 12
    query_ok(be, tag=13)
    be.close()


def test_sg_receive_is_one_descriptor_over_the_buffer(board):
    be = backend(board)
    query_ok(be)
    d = be.rx_desc
    assert d[PB.DESC_BUFFER] == be.rx_buf.physical_address
    assert d[PB.DESC_CONTROL] == be.rx_buf.nbytes
    status = int(d[PB.DESC_STATUS])
    assert status & PB.DESC_CMPLT and status & PB.DESC_RXEOF
    assert status & be.length_mask == 4 * (S.HEADER_WORDS + len(S.QUERY_FIELDS) + S.TRAILER_WORDS)
    assert board.dma.s2mm.curdesc == board.dma.s2mm.taildesc == d.physical_address
    be.close()


def test_pynqs_own_sg_receive_hangs_on_a_short_reply(board):
    """Why the backend arms the receive itself: pynq's split receive never goes idle."""
    be = backend(board)
    rx = be.dma.recvchannel
    rx.transfer(be.rx_buf)
    assert rx._num_descr >= 2
    tx = pynq.allocate(shape=(len(S.encode(S.OP_QUERY)),), dtype=np.uint32)
    tx[:] = S.encode(S.OP_QUERY)
    be.dma.sendchannel.transfer(tx)
    assert be.dma.sendchannel.idle and not rx.idle and not rx.halted
    assert rx._descr[0, 7] & PB.DESC_RXEOF and not rx._descr[1, 7] & PB.DESC_CMPLT
    rx.stop()
    be.dma.sendchannel.wait()


# --- defect 4: the overlay not loaded -----------------------------------------------------------
def test_overlay_not_loaded(board, monkeypatch):
    """pynq says the PL holds another design (its Overlay.__getattr__ then raises
    RuntimeError, not AttributeError): one clear sentence, not pynq's message.

    Stated rather than reached: pynq 4.0.0's ``is_loaded`` on a fresh
    ``Overlay(download=False)`` compares the bitstream name the constructor has just
    given the device, so it is always True there."""
    monkeypatch.setattr(pynq.Overlay, "is_loaded", lambda self: False)
    with pytest.raises(RuntimeError, match=r"the PL does not hold waferq.bit: load it first"):
        backend(board, download=False)


def test_overlay_loaded_earlier(board):
    backend(board).close()
    be = backend(board, download=False)  # the PL already holds it: no second download
    assert board.downloads == ["waferq.bin"]
    query_ok(be)
    be.close()


# --- the DMA model itself, against PG021 -----------------------------------------------------
def _dma(sg):
    from pynq_sim.axi_dma import AxiDma
    from pynq_sim.device import Ddr
    ddr = Ddr()
    dma = AxiDma(ddr, sg=sg)
    out = []
    dma.mm2s_out = lambda w, last: out.append((w, last))
    dma.s2mm_in = __import__("collections").deque()
    return ddr, dma, out


@pytest.mark.parametrize("sg,dmasr", [(True, 0x9), (False, 0x1)])
def test_model_reset_values(sg, dmasr):
    _, dma, _ = _dma(sg)
    assert dma.read(0x00) == dma.read(0x30) == 0x0001_0000  # IRQThreshold 1
    assert dma.read(0x04) == dma.read(0x34) == dmasr  # Halted (| SGIncld)


def test_model_sg_descriptor_rules():
    from pynq_sim import axi_dma as A
    ddr, dma, out = _dma(True)
    base = ddr.base
    desc, buf = base, base + 0x1000
    ddr.write_words(desc, [desc, 0, buf, 0, 0, 0, A.TXSOF | A.TXEOF | 8, 0])
    ddr.write_words(buf, [11, 22])
    dma.write(0x08, desc)
    dma.write(0x00, A.RS)
    dma.write(0x10, desc)
    dma.step()
    assert out == [(11, False), (22, True)]  # TLAST on the last word of the EOF descriptor
    status = int(ddr.read_words(desc + 28, 1)[0])
    assert status == A.ST_CMPLT | 8 and dma.read(0x04) & A.IDLE
    dma.write(0x00, 0)
    dma.write(0x08, desc)
    dma.write(0x00, A.RS)
    dma.write(0x10, desc)  # the same descriptor again, Cmplt still set
    dma.step()
    assert dma.read(0x04) & (A.SG_INT_ERR | A.HALTED | A.ERR_IRQ) == A.SG_INT_ERR | A.HALTED | A.ERR_IRQ
    dma.write(0x00, A.RS)  # an errored channel stays halted until a reset
    assert dma.read(0x04) & A.HALTED
    dma.write(0x00, A.RESET)
    assert dma.read(0x04) == A.HALTED | A.SG_INCLD and not dma.violations


def test_model_simple_s2mm_ends_on_tlast_and_reports_the_length():
    from pynq_sim import axi_dma as A
    ddr, dma, _ = _dma(False)
    dma.write(0x30, A.RS)
    assert not dma.read(0x34) & (A.HALTED | A.IDLE)  # running, not idle before a transfer
    dma.write(0x48, ddr.base)
    dma.write(0x58, 64)
    dma.s2mm_in.extend([(7, False), (8, False), (9, True), (10, True)])
    dma.step()
    assert dma.read(0x58) == 12 and dma.read(0x34) & A.IDLE  # 3 words: TLAST ended it
    assert list(ddr.read_words(ddr.base, 3)) == [7, 8, 9] and list(dma.s2mm_in) == [(10, True)]
    dma.write(0x58, 0)
    assert dma.read(0x34) & A.DMA_INT_ERR  # a zero length


# --- what no register model is needed for -----------------------------------------------------
def test_decode_dmasr():
    assert PB.decode_dmasr(0x0000000B) == "DMASR 0x0000000b [Halted, Idle, SGIncld]"
    text = PB.decode_dmasr(1 << 10 | 1 << 14)
    assert "SGDecErr" in text and "Err_Irq" in text and "invalid descriptor address" in text
    assert PB.DMASR_ERRORS == 0x770  # the bits pynq's own channel.error tests


def test_missing_hwh(tmp_path):
    bit = tmp_path / "waferq.bit"
    bit.write_bytes(bit_file())
    with pytest.raises(FileNotFoundError, match="hardware handoff"):
        PB.PynqBackend(bit)


def test_without_pynq(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ImportError
    with pytest.raises(RuntimeError, match="^pynq is not installed: the PYNQ backend runs on a "
                                           "PYNQ image on the board$"):
        PB.PynqBackend(tmp_path / "waferq.bit")


@pytest.mark.skip(reason="board_only: needs a Zybo Z7-20 running a PYNQ image with the bitstream")
def test_board_only_query_on_the_board():
    be = PB.PynqBackend("/home/xilinx/waferq/waferq.bit")
    assert S.decode(be.transact(S.encode(S.OP_QUERY))).opcode == S.OP_QUERY | S.REPLY_BIT


def test_a_service_batch_is_one_dma_transfer(board):
    """The board service's INFER_BATCH goes as one MM2S transfer (die states,
    PACK_DIE2) and its records come back bit-exact; the core's feature words
    (CAP_FEATURES) ride along in each record."""
    from contract.preprocess import CATEGORY_CODES
    from zybo_z7.backends import Accelerator
    from zybo_z7.service import Board

    be = backend(board)
    b = Board(Accelerator(be))
    b.load_weights(blob.pack(board.model).astype("<u4").tobytes())
    sends, send = [], be.dma.sendchannel
    real = send.transfer
    send.transfer = lambda buf, *a, **k: (sends.append(buf.nbytes), real(buf, *a, **k))[1]
    x = CATEGORY_CODES[np.random.default_rng(5).integers(0, 3, (8, 32, 32, 1))]
    res, _ = b.infer_batch(np.arange(8), x)
    n_pix = SPEC.in_size ** 2
    # no QUERY: the weights checksum is the LOAD_WEIGHTS reply's
    assert sends == [4 * (S.HEADER_WORDS + 1 + 8 * S.image_words(n_pix, S.PACK_DIE2) + 1)]
    cls, logits = board.model.classify(x)
    assert (res.status == 0).all() and np.array_equal(res.classes, cls)
    assert np.array_equal(res.logits, logits)
    be.close()
