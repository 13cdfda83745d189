"""contract.export_dir: the one reader of an export folder, and nobody else parses model.json."""
import ast
import json
from pathlib import Path

import pytest

from contract import blob, export_dir
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def export(tmp_path):
    im = random_model(CNNSpec.uniform(4, 4, channels=(4, 8)), seed=1)
    return im, im.save(tmp_path / "export")


def test_fields_are_what_intmodel_saved(export):
    im, folder = export
    ex = export_dir.read(folder, need_weights=True).check_topology()
    assert ex.topology_hash == im.topology_hash and ex.layers == im.layers
    assert ex.spec() == im.spec and ex.classes == tuple(im.spec.classes)
    assert ex.in_size == im.spec.in_size and ex.logit_scale_log2 == im.logit_scale_log2
    words = blob.pack(im)
    assert ex.blob_words == words.size and ex.weights_checksum == blob.checksum(words)
    assert ex.weights_bin() == words.astype("<u4").tobytes() and ex.reject is None
    assert IntModel.load(folder).topology_hash == im.topology_hash


def test_reject_rule_is_written_and_read(export):
    _, folder = export
    rule = {"temperature": 1.5, "threshold": 0.25}
    export_dir.read(folder).with_reject(rule)
    assert export_dir.read(folder).reject == rule


@pytest.mark.parametrize("break_it,match", [
    (lambda f: (f / "model.json").unlink(), "has no model.json"),
    (lambda f: (f / "model.json").write_text("{not json"), "cannot read"),
    (lambda f: (f / "weights.bin").unlink(), "has no weights.bin"),
])
def test_a_broken_folder_is_one_clear_error(export, break_it, match):
    _, folder = export
    break_it(folder)
    with pytest.raises(export_dir.ExportError, match=match):
        export_dir.read(folder, need_weights=True)


def test_a_missing_field_is_named_when_read(export):
    _, folder = export
    meta = json.loads((folder / "model.json").read_text())
    del meta["weights_checksum"]
    meta["layers"][0]["out_bits"] += 1
    (folder / "model.json").write_text(json.dumps(meta))
    ex = export_dir.read(folder)
    assert ex.topology_hash            # the fields a tool reads are still there
    with pytest.raises(export_dir.ExportError, match="'weights_checksum'"):
        ex.weights_checksum
    with pytest.raises(export_dir.ExportError, match="topology hash does not match"):
        ex.check_topology()
    with pytest.raises(export_dir.ExportError, match="does not exist"):
        export_dir.read(folder / "nope")


def test_nothing_else_parses_model_json():
    """No module of the tree (tests aside) does json.load(s) on a model.json path it
    spells out: they call export_dir (a path held in a variable is not traced)."""
    bad = []
    for top in ("quant", "hls", "zybo_z7", "host_stm32mp1", "bench", "deploy", "scripts", "contract"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == ROOT / "contract" / "export_dir.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("loads", "load") \
                        and "model.json" in ast.unparse(node):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "model.json parsed by hand at " + ", ".join(bad)
