"""Build the STM32MP1 host wheel: exactly the modules the host imports, numpy only.

    python -m deploy.host_wheel [--out build/dist]   -> prints the wheel's path

The module list is not kept by hand: it is the closure of the imports of every
module of ``host_stm32mp1`` and of ``deploy/host/waferq_host_config.py``, found
by reading their source (lazy imports inside functions included). A host module
that starts importing ``quant``, ``hls`` or ``zybo_z7`` (which need torch or
the board) stops the build with the chain that leads there; ``contract`` (the
torch-free model contract) and ``protocol`` are allowed.
"""
from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_DIR = Path(__file__).resolve().parent / "host"
# Top-level packages of this repository; anything else is stdlib or third party.
PROJECT = ("protocol", "contract", "quant", "hls", "zybo_z7", "host_stm32mp1", "bench", "scripts")
ALLOWED = ("protocol", "contract", "host_stm32mp1")
THIRD_PARTY_REQUIRED = {"numpy"}
# Imported only inside a try/except ImportError or a function that needs them.
THIRD_PARTY_OPTIONAL = {"pandas", "PIL", "tqdm", "psycopg", "psycopg2"}


class ClosureError(Exception):
    pass


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(path: Path, modname: str) -> set[str]:
    """Every absolute module name `path` imports (each `from a.b import c` yields a.b and a.b.c)."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = modname if path.name == "__init__.py" else modname.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def closure(roots: dict[str, Path], allowed=ALLOWED) -> tuple[dict[str, Path], set[str]]:
    """Project modules reachable from `roots` (name -> file), and third-party top names."""
    found: dict[str, Path] = {}
    via: dict[str, str] = {}
    third: set[str] = set()
    todo = list(roots.items())
    while todo:
        name, path = todo.pop()
        if name in found:
            continue
        found[name] = path
        # A package's __init__ runs before any of its modules.
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            f = _module_file(parent)
            if f is not None and parent not in found:
                via.setdefault(parent, name)
                todo.append((parent, f))
        for imp in _imports(path, name):
            top = imp.split(".")[0]
            if top not in PROJECT:
                if top not in sys.stdlib_module_names and top != "__future__":
                    third.add(top)
                continue
            f = _module_file(imp)
            if f is None:
                continue          # `from pkg import name` where name is not a module
            if top not in allowed:
                chain = [imp, name]
                while chain[-1] in via:
                    chain.append(via[chain[-1]])
                raise ClosureError("the host would need " + " <- ".join(chain))
            via.setdefault(imp, name)
            todo.append((imp, f))
    return found, third


def host_modules() -> dict[str, Path]:
    roots = {}
    for f in sorted((ROOT / "host_stm32mp1").rglob("*.py")):
        rel = f.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        roots[".".join(parts)] = f
    mods, third = closure(roots | {"waferq_host_config": HOST_DIR / "waferq_host_config.py"})
    unknown = third - THIRD_PARTY_REQUIRED - THIRD_PARTY_OPTIONAL
    if unknown:
        raise ClosureError("the host imports third-party modules not declared in "
                           f"deploy/host/pyproject.toml: {', '.join(sorted(unknown))}")
    return mods


def stage(dest: Path) -> list[str]:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    mods = host_modules()
    for name, src in mods.items():
        rel = src.relative_to(ROOT) if any(src.is_relative_to(ROOT / top) for top in ALLOWED) \
            else Path(src.name)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    shutil.copy2(HOST_DIR / "pyproject.toml", dest / "pyproject.toml")
    return sorted(mods)


def build(out: Path) -> Path:
    (ROOT / "build").mkdir(exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("waferq_host-*.whl"):
        old.unlink()
    # A staging folder of its own, so that two builds at once do not share one.
    with tempfile.TemporaryDirectory(prefix="host-wheel-", dir=ROOT / "build") as tmp:
        work = Path(tmp) / "src"
        stage(work)
        # No build isolation: setuptools is already here, and CI has no index to fetch it from.
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                               "--no-build-isolation", "-w", str(out), str(work)],
                              capture_output=True, text=True)
    if proc.returncode:
        raise ClosureError("pip wheel failed: " + (proc.stderr or proc.stdout).strip()[-2000:])
    (wheel,) = out.glob("waferq_host-*.whl")
    return wheel


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "dist"))
    ap.add_argument("--list", action="store_true", help="print the modules, build nothing")
    args = ap.parse_args(argv)
    try:
        if args.list:
            print("\n".join(sorted(host_modules())))
            return 0
        print(build(Path(args.out)))
    except ClosureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
