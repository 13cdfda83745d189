"""The STM32MP1 host and the board service have numpy, not torch."""
import json
import re
from pathlib import Path

import numpy as np

from contract.intmodel import random_model
from contract.spec import CNNSpec
from wq_service_helpers import ROOT, run_host, service

# Runs the CLI's main in-process, then checks what got imported. A meta-path
# hook records even attempted imports that a try/except would hide.
WRAPPER = """
import runpy, sys
tried = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'brevitas'):
            tried.append(name)
        return None
sys.meta_path.insert(0, Spy())
sys.argv = ['host_stm32mp1'] + sys.argv[1:]
rc = 0
try:
    runpy.run_module('host_stm32mp1', run_name='__main__', alter_sys=True)
except SystemExit as e:
    rc = e.code
assert 'torch' not in sys.modules and 'brevitas' not in sys.modules, 'torch imported'
assert not tried, 'tried to import ' + ', '.join(tried)
print('NO_TORCH_OK rc=%s' % rc)
sys.exit(rc)
"""

IMPORTS = """
import sys
import protocol.wire, protocol.stream, zybo_z7.backends, zybo_z7.service
import host_stm32mp1.cli, host_stm32mp1.client, host_stm32mp1.readers, contract.preprocess
import host_stm32mp1.report
bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'brevitas')]
assert not bad, bad
print('IMPORTS_OK')
"""


def test_host_cli_runs_without_torch(tmp_path):
    random_model(CNNSpec.uniform(4, 4), seed=1).save(tmp_path / "model")
    np.save(tmp_path / "m.npy", np.random.default_rng(0).integers(0, 3, (10, 30, 30)).astype(np.uint8))
    with service(tmp_path / "model", tmp_path) as (port, _):
        proc = run_host(["classify", str(tmp_path / "m.npy"), "--board", f"127.0.0.1:{port}",
                         "--model", str(tmp_path / "model"), "--out", str(tmp_path / "r.json"),
                         "--no-progress"], wrapper=WRAPPER)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NO_TORCH_OK rc=0" in proc.stdout
    assert len(json.loads((tmp_path / "r.json").read_text())["results"]) == 10


def test_board_and_host_modules_import_without_torch():
    proc = run_host([], wrapper=IMPORTS)
    assert proc.returncode == 0 and "IMPORTS_OK" in proc.stdout, proc.stderr


def test_no_torch_in_sources():
    pat = re.compile(r"^\s*(import|from)\s+(torch|brevitas)\b", re.M)
    for pkg in ("host_stm32mp1", "protocol", "zybo_z7"):
        for f in (ROOT / pkg).rglob("*.py"):
            assert not pat.search(f.read_text()), f"{f} imports torch or brevitas"


def test_help_and_usage_errors():
    proc = run_host(["classify", "--help"])
    assert proc.returncode == 0 and "--board" in proc.stdout
    proc = run_host(["classify", "x.npy"])
    assert proc.returncode == 2
    proc = run_host(["classify", "x.npy", "--board", "127.0.0.1:1", "--model", str(Path("/nonexistent"))])
    assert proc.returncode == 2 and "model.json" in proc.stderr
