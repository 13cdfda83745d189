"""A simulated Zynq-7000 under pynq 4.0's own ``EmbeddedDevice``.

pynq reaches the hardware of a Zynq board through four things, and only these are
replaced here (everything above them, Overlay, the .hwh parser, driver binding, ``DMA``,
``_SGDMAChannel``/``_SDMAChannel``, ``DefaultIP``, ``MMIO``, ``PynqBuffer``, is pynq's code):

- ``EmbeddedDevice.mmap`` (``/dev/mem``): returns a window whose element reads and writes
  go to the register models (``MMIO`` then runs its own ``MEMORY_MAPPED`` path, as on the
  board); the SLCR is a plain register file holding the boot clock setup;
- ``allocate_bo`` / ``map_bo`` / ``get_device_address`` / ``flush`` / ``invalidate``
  (``pyxrt``): buffer objects carved out of one simulated DDR region, CPU view = DDR
  (pynq 4.0 allocates non-cacheable buffers; a cacheable request is refused);
- ``libc.munmap`` (``pynq.buffer``): frees the buffer object;
- the FPGA manager sysfs files and the xclbin tools (``write_fpga_manager``,
  ``_xrt_download``, ``_create_xclbin``, the metadata cache files): a download is recorded.

Zynq's ``platform.machine()`` is ``armv7l``; the device says so, so pynq picks its Zynq
clock code.
"""
from __future__ import annotations

import ctypes
import weakref
from contextlib import contextmanager

import numpy as np

from .axi_dma import AxiDma
from .fabric import ApCtrlHs, Fabric

DDR_BASE, DDR_SIZE = 0x1000_0000, 8 << 20  # a CMA-like window inside the Zybo's 1 GiB
SLCR_BASE = 0xF800_0000
PAGE = 4096


class Ddr:
    every: "weakref.WeakSet[Ddr]" = weakref.WeakSet()  # buffers may outlive their board

    def __init__(self, base: int = DDR_BASE, size: int = DDR_SIZE):
        Ddr.every.add(self)
        self.base, self.size = base, size
        self.mem = bytearray(size)
        self.words = np.frombuffer(self.mem, dtype="<u4")
        self._next = 0
        self.live: dict[int, "SimBo"] = {}  # device address -> bo
        self.unmapped: list[int] = []  # device addresses of freed bos

    def _index(self, addr: int, n: int) -> int:
        if addr % 4 or not (self.base <= addr and addr + 4 * n <= self.base + self.size):
            raise IndexError(f"0x{addr:08x}+{4 * n} is not simulated DDR")
        return (addr - self.base) // 4

    def read_words(self, addr: int, n: int) -> np.ndarray:
        i = self._index(addr, n)
        return self.words[i:i + n].copy()

    def write_words(self, addr: int, words) -> None:
        words = np.asarray(words, dtype=np.uint32)
        i = self._index(addr, words.size)
        self.words[i:i + words.size] = words

    def allocate(self, size: int) -> "SimBo":
        # XRT gives page-aligned buffer objects of at least 8 KiB (xrt_device.allocate_bo)
        size = max(size, 8192)
        size = -(-size // PAGE) * PAGE
        if self._next + size > self.size:
            raise MemoryError("simulated DDR is full")
        bo = SimBo(self, self.base + self._next, size)
        self._next += size
        self.live[bo.address] = bo
        return bo


class SimBo:
    def __init__(self, ddr: Ddr, address: int, size: int):
        self.ddr, self.address, self.size = ddr, address, size
        off = address - ddr.base
        self.view = memoryview(ddr.mem)[off:off + size]
        self.virtual = np.frombuffer(self.view, np.uint8).__array_interface__["data"][0]


class SimLibc:
    """``pynq.buffer.libc`` on a board is the C library (on x86 pynq leaves it undefined);
    munmap of a buffer frees its bo. Installed once for the session: a buffer a failed
    test's traceback still holds may be freed after its board is gone."""

    def munmap(self, ptr, length) -> int:
        addr = ptr.value if isinstance(ptr, ctypes.c_void_p) else int(ptr)
        for ddr in Ddr.every:
            for dev, bo in list(ddr.live.items()):
                if bo.virtual == addr:
                    del ddr.live[dev]
                    ddr.unmapped.append(dev)
                    return 0
        raise AssertionError(f"munmap of 0x{addr:x}: not a mapped buffer object")


class RegisterWindow:
    """What ``mmap`` returns: ``MMIO`` indexes it by word (``array[idx]``)."""

    def __init__(self, model, fabric: Fabric, base: int):
        self.model, self.fabric, self.base = model, fabric, base
        self.log: list[tuple[str, int, int]] = []

    def __getitem__(self, idx):
        value = self.model.read(4 * int(idx)) & 0xFFFF_FFFF
        self.log.append(("r", 4 * int(idx), value))
        return np.uint32(value)

    def __setitem__(self, idx, value):
        value = int(value) & 0xFFFF_FFFF
        self.log.append(("w", 4 * int(idx), value))
        self.model.write(4 * int(idx), value)
        self.fabric.run()


def zynq_slcr() -> np.ndarray:
    """SLCR 0x000..0x1FF as a Zynq boots with FCLK0 at 100 MHz: IO PLL = 33.333 MHz x 30,
    FPGA0_CLK_CTRL source IO PLL, divisors 10 and 1 (UG585 appendix B, slcr)."""
    regs = np.zeros(0x200 // 4, dtype=np.uint32)
    regs[0x108 // 4] = 30 << 12  # IO_PLL_CTRL: PLL_FDIV 30, PRE_SRC ps_clk
    regs[0x100 // 4] = 40 << 12  # ARM_PLL_CTRL
    regs[0x104 // 4] = 32 << 12  # DDR_PLL_CTRL
    for off in (0x170, 0x180, 0x190, 0x1A0):  # FPGA0..3_CLK_CTRL: DIVISOR1 1, DIVISOR0 10
        regs[off // 4] = (1 << 20) | (10 << 8)
    return regs


def _embedded_device_class():
    from pynq.pl_server.device import Device
    from pynq.pl_server.embedded_device import EmbeddedDevice

    class SimZynqDevice(EmbeddedDevice):
        """pynq's Zynq device with the hardware seams of the module doc replaced."""

        def __init__(self, fabric: Fabric, windows: dict[int, tuple[int, object]]):
            Device.__init__(self, "sim_zynq0")  # XrtDevice.__init__ opens pyxrt: skipped
            self.capabilities = {"REGISTER_RW": False, "MEMORY_MAPPED": True, "CALLABLE": False}
            self.arch = "armv7l"
            self.fabric, self.windows = fabric, windows
            self.slcr = zynq_slcr()
            self.downloads: list[str] = []
            self.syncs: list[tuple[str, int]] = []
            self.mem_dict = {}
            self.timestamp = ""
            self.bitfile_name = ""

        @property
        def name(self):  # XRT's device info on a board
            return "sim_zynq7"

        # /dev/mem
        def mmap(self, base_addr, length):
            if SLCR_BASE <= base_addr < SLCR_BASE + 0x1000:
                return self.slcr[(base_addr - SLCR_BASE) // 4:]
            for base, (size, window) in self.windows.items():
                if base <= base_addr < base + size:
                    if base_addr != base:
                        raise AssertionError(f"MMIO at 0x{base_addr:x} inside a window at 0x{base:x}")
                    return window
            raise AssertionError(f"no simulated AXI slave at 0x{base_addr:08x}")

        # pyxrt
        def allocate_bo(self, size, idx, cacheable):
            if cacheable:
                raise NotImplementedError("cacheable buffers are not modelled (pynq 4.0 "
                                          "allocates non-cacheable ones)")
            return self.fabric.ddr.allocate(size)

        def map_bo(self, bo):
            return bo.view

        def get_device_address(self, bo):
            return bo.address

        def flush(self, bo, offset, ptr, size):
            self.syncs.append(("flush", bo.address + offset))

        def invalidate(self, bo, offset, ptr, size):
            self.syncs.append(("invalidate", bo.address + offset))

        def get_usage(self):
            raise NotImplementedError

        # FPGA manager, XRT's xclbin load, the cache files under site-packages
        def write_fpga_manager(self, attribute, value):
            if attribute == self.BS_FPGA_MAN:
                self.downloads.append(value)

        def _xrt_download(self, data):
            pass

        def gen_cache(self, bitstream, parser=None):
            pass

        def shutdown(self):
            pass

    return SimZynqDevice


@contextmanager
def sim_board(monkeypatch, answer, sg: bool, addresses: dict[str, int], sg_length_width=26):
    """Install a simulated board as pynq's active device; yields the device.

    ``addresses``: (base, range) of the DMA, the CSR block and the HLS control block on
    M_AXI_GP0 (board.toml's [address]). ``answer``: request words -> reply words (the core's behaviour)."""
    import pynq
    import pynq.buffer
    from pynq.pl_server import embedded_device
    from pynq.pl_server.device import Device

    ddr = Ddr()
    dma = AxiDma(ddr, sg=sg, length_width=sg_length_width)
    core = ApCtrlHs(answer)
    fabric = Fabric(ddr, dma, core)
    windows = {}
    for name, model in (("dma", dma), ("csr", fabric.csr), ("hls_ctrl", core)):
        base, size = addresses[name]
        windows[base] = (size, RegisterWindow(model, fabric, base))
    dev = _embedded_device_class()(fabric, windows)
    dev.ddr, dev.dma, dev.core, dev.csr = ddr, dma, core, fabric.csr
    if not isinstance(getattr(pynq.buffer, "libc", None), SimLibc):
        pynq.buffer.libc, pynq.buffer.ctypes = SimLibc(), ctypes
    # xclbinutil (an XRT tool on the board image) builds the memory topology pynq hands to
    # XRT; the simulated allocator ignores it, so pynq's own default xclbin stands in.
    monkeypatch.setattr(embedded_device, "_create_xclbin", lambda mem: embedded_device.DEFAULT_XCLBIN)
    monkeypatch.setattr(embedded_device, "_preload_binfile", _record_binfile)
    monkeypatch.setattr(Device, "_devices", [dev], raising=False)
    monkeypatch.setattr(Device, "_active_device", dev, raising=False)
    from pynq.ps import Clocks
    monkeypatch.setattr(Clocks, "device", dev, raising=False)
    if hasattr(Clocks, "_real_instance"):
        monkeypatch.delattr(Clocks, "_real_instance")
    yield dev
    import gc
    gc.collect()  # buffers of dead drivers go back now, not in a later test
    assert not dma.violations, dma.violations


def _record_binfile(bitstream, parser):
    """On a board this writes the .bin to /lib/firmware for the FPGA manager."""
    from pathlib import Path
    bitstream.binfile_name = Path(bitstream.bitfile_name).stem + ".bin"


def bit_file(design: str = "waferq_wrapper;UserID=0XFFFFFFFF;Version=none",
             part: str = "7z020clg400", payload: bytes = b"\xaa\x99\x55\x66" * 4) -> bytes:
    """A .bit file as Vivado frames one (the header fields pynq's parse_bit_header reads),
    around a placeholder payload: nothing here configures anything."""
    import struct

    def field(key: bytes, text: str) -> bytes:
        data = text.encode() + b"\0"
        return key + struct.pack(">h", len(data)) + data

    head = struct.pack(">h", 9) + bytes.fromhex("0ff00ff00ff00ff000") + struct.pack(">h", 1)
    return (head + field(b"a", design) + field(b"b", part) + field(b"c", "2026/12/02")
            + field(b"d", "06:00:00") + b"e" + struct.pack(">i", len(payload)) + payload)
