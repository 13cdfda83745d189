"""``import_model``: read, map, verify, then write the export folder."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from contract.graphspec import GraphSpec
from contract.intmodel import IntModel
from quant.onnx_import import read, verify
from quant.onnx_import.mapping import map_graph
from quant.onnx_import.refuse import ImportRefused


@dataclass
class ImportReport:
    name: str
    out_dir: Path
    spec: GraphSpec
    model: IntModel
    host_moved: list[str] = field(default_factory=list)   # what now runs on the host, as sentences
    max_abs_err: float = 0.0       # largest |host logits - ONNX output| over the checked inputs
    n_verified: int = 0            # generated inputs checked
    tolerance: float = 0.0         # the float tail's bound that err stayed within
    layers_exact: int = 0          # integer tensors compared bit-exact on every input

    def summary(self) -> str:
        lines = [f"imported {self.name}: {len(self.spec.graph)} layers, input "
                 f"{self.spec.in_h}x{self.spec.in_w}x{self.spec.in_channels} at {self.spec.in_bits} bits, "
                 f"{len(self.spec.classes)} classes -> {self.out_dir}"]
        lines += [f"  host: {m}" for m in self.host_moved]
        lines.append(f"  verified on {self.n_verified} generated inputs: {self.layers_exact} integer "
                     f"tensors bit-exact against execute_onnx; logits within {self.max_abs_err:.3g} "
                     f"(bound {self.tolerance:.3g})")
        return "\n".join(lines)


def import_model(onnx_path, name: str, out_dir, *, n_verify: int = 8, seed: int = 0,
                 classes: list[str] | None = None) -> ImportReport:
    """Import a QONNX or QCDQ file as model ``name`` into ``out_dir`` (the export
    folder). Raises ImportRefused (one sentence) if any node cannot be mapped or
    the integer model does not match ``execute_onnx``; then nothing is written."""
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    model = read.load(onnx_path)
    mapped = map_graph(model)
    n_classes = mapped.builder.layers[-1]["out_features"]
    classes = tuple(classes) if classes else tuple(f"class{i}" for i in range(n_classes))
    if len(classes) != n_classes:
        raise ImportRefused(f"{len(classes)} class names given for {n_classes} logits")
    c, h, w = mapped.in_chw
    try:
        spec = GraphSpec(name=name, in_h=h, in_w=w, in_channels=c, classes=classes,
                         graph=tuple(mapped.builder.layers), in_bits=mapped.in_bits,
                         host_pre=mapped.host_pre, host_post=mapped.host_post,
                         source={"onnx": onnx_path.name, "importer": "quant.onnx_import",
                                 "host_moved": mapped.moved})
    except ValueError as e:
        raise ImportRefused(f"the mapped layer graph is not valid: {e}") from None
    intmodel = IntModel(spec, mapped.weights, logit_scale_log2=0)
    checked = verify.verify(model, intmodel, spec, mapped.checks, n_verify, seed)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    intmodel.save(out_dir)
    return ImportReport(name, out_dir, spec, intmodel, mapped.moved, checked.max_abs_err, checked.n,
                        checked.tolerance, checked.layers_exact)
