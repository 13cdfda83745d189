"""Compile the generated HLS C++ into a shared library for C simulation.

``build(hls_dir)`` compiles ``hls_dir/firmware/waferq_top.cpp`` and
``csim_api.cpp`` with g++ against the ap_types headers that ship inside the
installed hls4ml package, into ``hls_dir/csim/libwaferq_csim.so``. A hash of
the sources, headers and flags is kept next to it, so an unchanged folder is
not rebuilt.

Usage: ``python -m hls.csim_build build/X/hls``.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

LIB_NAME = "libwaferq_csim.so"
# -fno-gnu-unique: g++ otherwise binds the static locals of templates and inline
# functions (the image and activation buffers) process-wide, so two loaded
# cores of different topologies would share, and overflow, one buffer.
CXXFLAGS = ["-O2", "-std=c++14", "-shared", "-fPIC", "-fno-gnu-unique", "-w"]
SOURCES = ("waferq_top.cpp", "csim_api.cpp")
HOOKS = "wq_csim_hooks.h"
# The cycle-accounting build (hls/cycles.py): same sources, counted accesses.
CYCLES_LIB = "libwaferq_cycles.so"
CYCLES_SIM = "wq_cycles_sim.h"


class BuildError(RuntimeError):
    pass


def ap_types_dir() -> Path:
    try:
        import hls4ml
    except ImportError as e:
        raise BuildError("hls4ml is not installed, so the ap_types headers are missing: "
                         "install the 'hls' extra (pip install -e .[hls]).") from e
    path = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    if not (path / "ap_int.h").is_file() or not (path / "hls_stream.h").is_file():
        raise BuildError(f"the ap_types headers (ap_int.h, hls_stream.h) are missing from {path}.")
    return path


def gxx() -> str:
    exe = shutil.which("g++")
    if exe is None:
        raise BuildError("g++ was not found on PATH; install it (e.g. apt-get install g++) to run C-sim.")
    return exe


def _digest(fw: Path, flags: list[str]) -> str:
    h = hashlib.sha256(" ".join(flags).encode())
    for f in sorted(fw.glob("*.h")) + [fw / s for s in SOURCES]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def build(hls_dir: str | Path, cycles: bool = False) -> Path:
    """Compile (when needed) and return the path of ``libwaferq_csim.so``, or with
    ``cycles`` of ``libwaferq_cycles.so``, the cycle-accounting build (-DWQ_CYCLES)."""
    hls_dir = Path(hls_dir)
    fw = hls_dir / "firmware"
    missing = [s for s in (*SOURCES, HOOKS) if not (fw / s).is_file()]
    if missing:
        raise BuildError(f"{fw} lacks {', '.join(missing)}: run hls.generate first.")
    compiler, inc = gxx(), ap_types_dir()
    # The harness hooks (hls.generate CSIM_HOOKS) go into the C-sim library only.
    flags = CXXFLAGS + [f"-I{fw}", f"-I{inc}", "-include", str(fw / HOOKS)]
    if cycles:
        flags += ["-DWQ_CYCLES", "-include", str(fw / CYCLES_SIM)]
    out_dir = hls_dir / "csim"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = CYCLES_LIB if cycles else LIB_NAME
    lib, stamp = out_dir / name, out_dir / (name + ".sha256")
    digest = _digest(fw, flags)
    if lib.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return lib
    # Build to a temporary name: a process that has the old library loaded keeps it intact.
    tmp = out_dir / (name + ".tmp")
    cmd = [compiler, *flags, "-o", str(tmp), *(str(fw / s) for s in SOURCES)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"g++ failed to compile {fw} (exit {res.returncode}):\n{res.stderr[-4000:]}")
    tmp.replace(lib)
    stamp.write_text(digest)
    return lib


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m hls.csim_build HLS_DIR", file=sys.stderr)
        return 2
    try:
        print(build(argv[0]))
    except BuildError as e:
        print(f"hls.csim_build: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
