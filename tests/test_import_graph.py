"""The import graph between the top-level packages follows the data flow
(model contract -> quantize/export -> HLS -> bitstream/board -> host), with the
torch-free contract at the base. Imports are read with ast (lazy imports inside
functions included), so a test fails naming the module that breaks the rule."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each package may import from the others. bench/ and scripts/ sit on top and
# may import anything; tests are not checked.
ALLOWED = {
    "protocol": set(),
    "contract": {"protocol"},
    "quant": {"contract", "protocol"},
    "hls": {"contract", "protocol"},
    "zybo_z7": {"contract", "protocol", "hls"},
    "host_stm32mp1": {"contract", "protocol"},
    "deploy": {"contract", "protocol", "host_stm32mp1"},
}
TOPS = set(ALLOWED) | {"bench", "scripts"}
# Module-level exceptions, each with its reason.
EXCEPTIONS = {
    # make csim's check feeds synthetic wafer maps (numpy only, no torch) to the C-sim.
    ("hls.check", "quant.synth"),
}


def _modules(top: str):
    for path in sorted((ROOT / top).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def _imports(path: Path):
    """(imported module, names) of every absolute import in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [a.name for a in node.names]


def test_imports_between_packages_follow_the_data_flow():
    bad = []
    for top, allowed in ALLOWED.items():
        for name, path in _modules(top):
            for mod, names in _imports(path):
                other = mod.split(".")[0]
                if other in TOPS and other != top and other not in allowed:
                    # `from pkg import mod` names the module it takes
                    bad += [f"{name} imports {t}" for t in ([f"{mod}.{n}" for n in names] or [mod])
                            if (name, t) not in EXCEPTIONS]
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for top in sorted(TOPS):
        for name, path in _modules(top):
            for mod, names in _imports(path):
                if mod.split(".")[0] in TOPS and mod != name:
                    bad += [f"{name} imports {mod}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
    assert not bad, "private names used outside their module:\n" + "\n".join(bad)


def test_importing_the_contract_imports_no_torch():
    mods = [name for name, _ in _modules("contract")]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'brevitas', 'qonnx', 'onnx', 'hls4ml', 'quant', 'hls', 'zybo_z7', "
            "'host_stm32mp1')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]", f"importing contract pulled in: {out.strip()}"
