"""drivers/waferq/waferq_sg.c (the request's scatter-gather plan), in user space.

The driver pins the pages of a request and builds one sg entry per page from
``waferq_sg_segment()``; here the same C file, loaded through ctypes, is
compared with a few lines of Python over random and edge-case buffers.
"""
import ctypes
import errno

import numpy as np
import pytest

from protocol import stream as S

from driver_helpers import build_user_lib

MAX_BYTES = 4 * S.MAX_MESSAGE_WORDS
ULONG_MAX = (1 << (8 * ctypes.sizeof(ctypes.c_ulong))) - 1


class Plan(ctypes.Structure):
    _fields_ = [("page_addr", ctypes.c_ulong), ("offset", ctypes.c_ulong),
                ("nr_pages", ctypes.c_uint), ("len", ctypes.c_size_t),
                ("page_size", ctypes.c_ulong)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    lib = build_user_lib("waferq_sg", tmp_path_factory.mktemp("waferq_sg"))
    lib.waferq_sg_plan.argtypes = [ctypes.c_ulong, ctypes.c_size_t, ctypes.c_ulong,
                                   ctypes.POINTER(Plan), ctypes.POINTER(ctypes.c_char_p)]
    lib.waferq_sg_plan.restype = ctypes.c_int
    lib.waferq_sg_segment.argtypes = [ctypes.POINTER(Plan), ctypes.c_uint,
                                      ctypes.POINTER(ctypes.c_ulong),
                                      ctypes.POINTER(ctypes.c_ulong)]
    lib.waferq_sg_segment.restype = ctypes.c_int
    return lib


def c_plan(lib, addr, length, page):
    """(0, page_addr, [(offset, len), ...]) or (errno, why, None) from the C code."""
    plan, why = Plan(), ctypes.c_char_p()
    rc = lib.waferq_sg_plan(addr, length, page, ctypes.byref(plan), ctypes.byref(why))
    if rc:
        return -rc, why.value.decode(), None
    segs = []
    off, n = ctypes.c_ulong(), ctypes.c_ulong()
    for i in range(plan.nr_pages):
        assert lib.waferq_sg_segment(ctypes.byref(plan), i, ctypes.byref(off), ctypes.byref(n)) == 0
        segs.append((off.value, n.value))
    assert lib.waferq_sg_segment(ctypes.byref(plan), plan.nr_pages, ctypes.byref(off),
                                 ctypes.byref(n)) == -errno.EINVAL
    return 0, plan.page_addr, segs


def model(addr, length, page):
    """What the driver must ask for: one (offset, len) per page the buffer touches."""
    if length > MAX_BYTES:  # first, as in waferq_msg_check_size()
        return errno.EMSGSIZE
    if length == 0 or length % 4 or addr % 4:
        return errno.EINVAL
    if addr + length - 1 > ULONG_MAX:
        return errno.EFAULT
    segs, pos, end = [], addr, addr + length
    while pos < end:
        page_end = (pos // page + 1) * page
        segs.append((pos % page, min(page_end, end) - pos))
        pos = min(page_end, end)
    return 0, addr - addr % page, segs


def check(lib, addr, length, page=4096):
    expected = model(addr, length, page)
    got = c_plan(lib, addr, length, page)
    if isinstance(expected, int):
        assert got[0] == expected, (addr, length, got)
        return got
    assert got == expected, (addr, length)
    segs = got[2]
    # What the DMA needs of every entry: word-aligned, within its page, the whole buffer.
    assert all(o % 4 == 0 and n % 4 == 0 and 0 < n and o + n <= page for o, n in segs)
    assert sum(n for _, n in segs) == length
    assert len(segs) == (addr + length - 1) // page - addr // page + 1
    return got


@pytest.mark.parametrize("page", [4096, 16384, 65536])
def test_random_buffers_match_the_model(lib, page):
    rng = np.random.default_rng(page)
    for _ in range(3000):
        base = int(rng.integers(0, 1 << 40)) * 4
        # Lengths skewed to small, but reaching past the maximum.
        length = int(min(MAX_BYTES + 64, 4 * rng.geometric(1 / rng.choice([4, 1000, 200000]))))
        check(lib, base, length, page)


PAGE = 4096
EDGE = [
    (0x10000, 4), (0x10FFC, 4), (0x10FFC, 8),  # one word, the last word of a page, straddling
    (0x10000, PAGE), (0x10004, PAGE), (0x10FFC, PAGE),  # exactly one page, aligned or not
    (0x10000, PAGE - 4), (0x10000, PAGE + 4), (0x10004, PAGE - 4), (0x10004, PAGE - 8),
    (0x10000, 100 * PAGE), (0x10800, 100 * PAGE + 12),  # many pages
    (0x10000, MAX_BYTES), (0x10FFC, MAX_BYTES), (0x10000, MAX_BYTES - 4),
    (ULONG_MAX + 1 - PAGE, PAGE),  # the very last page of the address space
]


@pytest.mark.parametrize("addr,length", EDGE)
def test_edge_buffers(lib, addr, length):
    assert check(lib, addr, length)[0] == 0


def test_max_size_page_count(lib):
    assert len(check(lib, 0x10000, MAX_BYTES)[2]) == MAX_BYTES // PAGE
    assert len(check(lib, 0x10004, MAX_BYTES)[2]) == MAX_BYTES // PAGE + 1


@pytest.mark.parametrize("addr,length,code,why", [
    (0x10000, 0, errno.EINVAL, "empty"),
    (0x10001, MAX_BYTES + 1, errno.EMSGSIZE, "longer"),
    (0x10001, 8, errno.EINVAL, "32-bit aligned"),
    (0x10002, 8, errno.EINVAL, "32-bit aligned"),
    (0x10FFF, 4, errno.EINVAL, "32-bit aligned"),
    (0x10000, 6, errno.EINVAL, "whole number"),
    (0x10000, 1, errno.EINVAL, "whole number"),
    (0x10000, MAX_BYTES + 4, errno.EMSGSIZE, "longer"),
    (0x10000, MAX_BYTES + 1, errno.EMSGSIZE, "longer"),
    (0x10000, 1 << 40, errno.EMSGSIZE, "longer"),
    (ULONG_MAX + 1 - PAGE, PAGE + 4, errno.EFAULT, "wraps"),
])
def test_rejected_buffers(lib, addr, length, code, why):
    got = check(lib, addr, length)
    assert got[0] == code and why in got[1]


@pytest.mark.parametrize("page", [0, 2, 3, 4095, 4097])
def test_bad_page_size(lib, page):
    assert c_plan(lib, 0x10000, 4, page)[0] == errno.EINVAL
