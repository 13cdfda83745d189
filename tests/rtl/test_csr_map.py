"""zybo_z7/csr_map.py is the one source of the register map: the generated Verilog and C
headers must say exactly what it says."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from protocol import stream as S
from zybo_z7 import csr_map as M


def test_map_is_consistent():
    M.check()
    offsets = [r.offset for r in M.REGISTERS]
    assert len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 for o in offsets)
    assert M.BY_NAME["CONTROL"].access == "RW" and M.BY_NAME["VERSION"].access == "RO"
    # the names the brief and the driver rely on
    for name in ("VERSION", "TOPOLOGY_HASH", "CONTROL", "STATUS", "TIMEOUT_CYCLES",
                 "FRAMES_OK", "FRAMES_TIMEOUT", "FRAMES_OVERLONG", "FRAMES_ERROR"):
        assert name in M.BY_NAME


def test_guard_codes_extend_protocol_errors():
    codes = set(M.GUARD_ERRORS)
    assert codes == {M.GUARD_ERR_TIMEOUT, M.GUARD_ERR_OVERLONG, M.GUARD_ERR_RESET}
    core_codes = {S.ERR_BAD_MAGIC, S.ERR_BAD_VERSION, S.ERR_BAD_LENGTH, S.ERR_UNKNOWN_OPCODE,
                  S.ERR_NO_WEIGHTS, S.ERR_BAD_CHECKSUM}
    assert not codes & core_codes and codes <= set(S.ERRORS)
    tail = S.encode(S.OP_ERROR, [M.GUARD_ERR_TIMEOUT, 5], 0)
    assert tail.size == M.GUARD_TAIL_WORDS
    with pytest.raises(S.StreamError, match="error 7: frame guard"):
        S.raise_if_error(S.decode(tail))


def test_verilog_header_matches_map(tmp_path):
    vh, _ = M.write(tmp_path)
    params = {m.group(1): int(m.group(2), 16) for m in
              re.finditer(r"localparam \[31:0\] (\w+) = 32'h([0-9a-f]{8});", vh.read_text())}
    expect = {f"WQ_CSR_{k}": v for k, v in M.constants().items()}
    expect.update({f"WQ_{k}": v for k, v in M.guard_constants().items()})
    assert params == expect
    assert params["WQ_CSR_TIMEOUT_CYCLES_ADDR"] == M.BY_NAME["TIMEOUT_CYCLES"].offset
    assert params["WQ_CSR_CONTROL_SOFT_RESET_MASK"] == 1


def test_c_header_matches_map(tmp_path):
    _, h = M.write(tmp_path)
    text = h.read_text()
    defines = {m.group(1): int(m.group(2), 0) for m in
               re.finditer(r"#define (WQ_\w+) (0x[0-9a-f]+|\d+)u", text)}
    for k, v in M.constants().items():
        assert defines[f"WQ_CSR_{k}"] == v, k
    for k, v in M.guard_constants().items():
        if k.startswith("GUARD_"):
            assert defines[f"WQ_{k}"] == v, k


def test_c_header_compiles_to_the_same_values(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (apt-get install gcc)")
    M.write(tmp_path)
    checks = [f'_Static_assert(WQ_CSR_{k} == {v}u, "WQ_CSR_{k}");' for k, v in M.constants().items()]
    src = tmp_path / "check.c"
    src.write_text('#include "wq_csr_map.h"\n' + "\n".join(checks) + "\nint main(void){return 0;}\n")
    proc = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-fsyntax-only", f"-I{tmp_path}",
                           str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_write_is_idempotent(tmp_path):
    a = [p.read_text() for p in M.write(tmp_path)]
    b = [p.read_text() for p in M.write(tmp_path)]
    assert a == b


def test_cli(tmp_path, capsys):
    M.main(["--out-dir", str(tmp_path / "inc")])
    assert (tmp_path / "inc" / "wq_csr_map.vh").exists()
    assert (tmp_path / "inc" / "wq_csr_map.h").exists()
