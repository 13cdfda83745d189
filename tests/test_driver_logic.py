"""drivers/waferq/waferq_msg.c, compiled in user space, against protocol.stream.

The driver checks a request's framing before any DMA: these tests load the
same C file through ctypes and feed it messages built by ``protocol.stream``.
"""
import ctypes
import errno

import numpy as np
import pytest

from protocol import stream as S

from driver_helpers import msg_lib


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return msg_lib(tmp_path_factory.mktemp("waferq_msg"))


def check(lib, data: bytes, nbytes: int | None = None):
    """(errno or 0, reason) for a message; nbytes defaults to len(data)."""
    why = ctypes.c_char_p()
    buf = data + bytes(max(0, 12 - len(data)))  # the C side reads the header words only
    rc = lib.waferq_msg_check(buf, len(data) if nbytes is None else nbytes, ctypes.byref(why))
    return -rc, (why.value or b"").decode()


@pytest.mark.parametrize("opcode,n", [(S.OP_QUERY, 0), (S.OP_INFER, 1024),
                                      (S.OP_LOAD_WEIGHTS, 5), (0x7E, 3)])
def test_good_messages_pass(lib, opcode, n):
    data = S.to_bytes(S.encode(opcode, np.arange(n, dtype=np.uint32), tag=0xDEADBEEF))
    assert check(lib, data) == (0, "")
    assert lib.waferq_msg_announced_bytes(data) == len(data)
    S.decode(S.from_bytes(data))  # and Python agrees


def test_largest_message_passes(lib):
    head = S.to_bytes(S.encode(S.OP_LOAD_WEIGHTS, np.zeros(S.MAX_MESSAGE_WORDS - 4,
                                                           dtype=np.uint32)))[:12]
    assert check(lib, head, 4 * S.MAX_MESSAGE_WORDS)[0] == 0


def test_words_decode_little_endian(lib):
    assert lib.waferq_msg_word(bytes([1, 2, 3, 4, 5, 6, 7, 8]), 1) == 0x08070605


def good(n=2):
    return bytearray(S.to_bytes(S.encode(S.OP_INFER, np.arange(n, dtype=np.uint32), tag=7)))


def test_bad_magic_is_einval(lib):
    data = good()
    data[2:4] = b"\x00\x00"
    assert check(lib, bytes(data)) == (errno.EINVAL, "bad magic in the header word")


def test_bad_version_is_einval(lib):
    data = good()
    data[1] = S.VERSION + 1
    code, why = check(lib, bytes(data))
    assert code == errno.EINVAL and "version" in why


@pytest.mark.parametrize("nbytes", [0, 4, 8, 12])
def test_short_is_einval(lib, nbytes):
    code, why = check(lib, bytes(good(0)[:nbytes]))
    assert code == errno.EINVAL and "shorter" in why


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_partial_word_is_einval(lib, cut):
    data = bytes(good(4))
    code, why = check(lib, data[:-cut])
    assert code == errno.EINVAL and "32-bit words" in why


def test_oversize_is_emsgsize(lib):
    data = bytes(good())
    for nbytes in (4 * S.MAX_MESSAGE_WORDS + 4, 4 * S.MAX_MESSAGE_WORDS + 1, 1 << 40):
        code, why = check(lib, data, nbytes)
        assert code == errno.EMSGSIZE and "longer" in why
    size_why = ctypes.c_char_p()
    assert lib.waferq_msg_check_size(4 * S.MAX_MESSAGE_WORDS + 4,
                                     ctypes.byref(size_why)) == -errno.EMSGSIZE


@pytest.mark.parametrize("length", [1, 3, 0xFFFFFFFF, 0x3FFFFFFF])
def test_wrong_length_word_is_einval(lib, length):
    data = good(2)
    data[4:8] = length.to_bytes(4, "little")
    code, why = check(lib, bytes(data))
    assert code == errno.EINVAL and "length word" in why
    with pytest.raises(S.StreamError):
        S.decode(S.from_bytes(bytes(data)))


def test_announced_bytes_saturates_to_zero(lib):
    data = good()
    data[4:8] = (0xFFFFFFFF).to_bytes(4, "little")
    assert lib.waferq_msg_announced_bytes(bytes(data)) == 0


def test_checksum_is_left_to_the_core(lib):
    """The driver does not read the whole message; the core answers BAD_CHECKSUM."""
    data = good()
    data[-1] ^= 1
    assert check(lib, bytes(data))[0] == 0
