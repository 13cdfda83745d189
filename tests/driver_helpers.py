"""The driver's pure C parts, built as user-space libraries for ctypes.

waferq_msg.c and waferq_sg.c include no kernel header, so the tests (and the
chardev stand-in) run exactly the code the driver runs.
"""
import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol import codegen

DRIVER_SRC = Path(__file__).resolve().parents[1] / "drivers" / "waferq"


def build_user_lib(name: str, out: Path) -> ctypes.CDLL:
    """Compile drivers/waferq/<name>.c (warnings are errors) into ``out`` and load it."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    codegen.write_stream_header(out)
    so = out / f"lib{name}.so"
    p = subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared",
                        f"-I{out}", "-o", str(so), str(DRIVER_SRC / f"{name}.c")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return ctypes.CDLL(str(so))


def msg_lib(out: Path) -> ctypes.CDLL:
    """waferq_msg.c: the driver's message checks, with their C signatures."""
    lib = build_user_lib("waferq_msg", out)
    lib.waferq_msg_check.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                     ctypes.POINTER(ctypes.c_char_p)]
    lib.waferq_msg_check.restype = ctypes.c_int
    lib.waferq_msg_check_size.argtypes = [ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p)]
    lib.waferq_msg_check_size.restype = ctypes.c_int
    lib.waferq_msg_announced_bytes.argtypes = [ctypes.c_char_p]
    lib.waferq_msg_announced_bytes.restype = ctypes.c_size_t
    lib.waferq_msg_word.argtypes = [ctypes.c_char_p, ctypes.c_uint]
    lib.waferq_msg_word.restype = ctypes.c_uint32
    return lib
