"""End-to-end demo on the C-sim: what `make demo` runs after train, export and csim.

1. Drop ``--n`` fresh synthetic wafer maps as one NPY file each, as the test
   equipment would, with their true classes in labels.json.
2. Start the board service (``--backend csim``) in its own process on loopback.
3. Run the host CLI over every file: it pushes the weights, streams batches,
   and writes results.json.
4. Check every board result against the integer reference, draw the
   confusion matrix, and write report.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from contract import export_dir, views
from contract.preprocess import to_model_input
from quant import metrics, synth
from contract.intmodel import IntModel

DEMO_SEED = 2026  # not a training (0) or test (1000+) seed: these maps are unseen


def write_maps(folder: Path, n: int) -> tuple[list[Path], dict]:
    folder.mkdir(parents=True, exist_ok=True)
    maps, labels = synth.dataset(n, seed=DEMO_SEED)
    files, label_map = [], {}
    for i, (m, y) in enumerate(zip(maps, labels)):
        path = folder / f"wafer_{i:05d}.npy"
        np.save(path, m)
        files.append(path)
        label_map[str(path)] = int(y)
    return files, label_map


def start_service(model: Path, csim_dir: Path, port_file: Path, log: Path) -> subprocess.Popen:
    port_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "zybo_z7.service", "--model", str(model), "--backend", "csim",
           "--work-dir", str(csim_dir), "--insecure", "--port", "0", "--port-file", str(port_file)]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"demo: the board service did not start; see {log}")
        time.sleep(0.1)
    return proc


def confusion_of(records: list[dict], n_classes: int) -> np.ndarray:
    done = [r for r in records if r["status"] == "ok" and r.get("label") is not None]
    return metrics.confusion(np.array([r["label"] for r in done], dtype=np.int64),
                             np.array([r["class_index"] for r in done], dtype=np.int64), n_classes)


def check_against_reference(records: list[dict], model: IntModel, n_views: int = 1) -> tuple[int, int]:
    """(equal, compared): board logits against the integer reference, map by
    map (with views, the sum over the map's views, as the host adds them)."""
    ok = [r for r in records if r["status"] == "ok"]
    x = np.stack([to_model_input(np.load(r["source"]), model.spec.in_size) for r in ok])
    ref = views.combine(model.forward(views.expand(x, n_views)), n_views)
    equal = sum(int(np.array_equal(np.asarray(r["logits"]), ref[i])) for i, r in enumerate(ok))
    return equal, len(ok)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="export folder")
    ap.add_argument("--csim", type=Path,
                    help="C-sim build folder for the service (default: csim/ next to the export). "
                         "It has no parallel.json, so the core is unfolded: the same results as the "
                         "folded core `make csim` checks, several times faster to simulate")
    ap.add_argument("--out", type=Path, default=Path("build/demo"))
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args(argv)
    csim_dir = args.csim or args.model.parent / "csim"
    model = IntModel.load(args.model)
    files, labels = write_maps(args.out / "maps", args.n)
    (args.out / "labels.json").write_text(json.dumps(labels))
    service = start_service(args.model, csim_dir, args.out / "service.port", args.out / "service.log")
    try:
        port = (args.out / "service.port").read_text().strip()
        cmd = [sys.executable, "-m", "host_stm32mp1", "classify", *map(str, files),
               "--board", f"127.0.0.1:{port}", "--model", str(args.model),
               "--labels", str(args.out / "labels.json"), "--out", str(args.out / "results.json"),
               "--insecure"]   # a local demo on loopback: no key
        host_rc = subprocess.call(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        service.terminate()
        service.wait(timeout=30)
    if host_rc not in (0, 1):
        raise SystemExit(f"demo: the host failed with exit code {host_rc}")
    results = json.loads((args.out / "results.json").read_text())
    records, summary = results["results"], results["summary"]
    classes = list(model.spec.classes)
    cm = confusion_of(records, len(classes))
    equal, compared = check_against_reference(records, model, export_dir.read(args.model).views)
    acc = summary["accuracy"]
    metrics.plot_confusion(cm, classes, args.out / "confusion.png",
                   f"{model.spec.name} on the C-sim: {100 * acc:.1f}% of {summary['n_labelled']} maps")
    report = {"model": model.spec.name, "backend": "csim", "n_maps": len(files),
              "one_result_per_map": len(records) == len(files),
              "bit_exact_vs_integer_reference": {"equal": equal, "compared": compared},
              "confusion_matrix": cm.tolist(), "classes": classes, "summary": summary}
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"\nbit-exact against the integer reference: {equal}/{compared} maps")
    print(f"wrote {args.out / 'report.json'} and {args.out / 'confusion.png'}")
    if equal != compared or len(records) != len(files):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
