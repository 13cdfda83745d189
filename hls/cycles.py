"""`make csim`'s cycle count: the generated core built with -DWQ_CYCLES.

    python -m hls.cycles --model build/X/export --hls build/X/hls [--json cycles.json] [--n 3]

The cycle-accounting build (``hls/templates/wq_cycles.h`` hooks,
``hls/cycles/wq_cycles_sim.h`` runtime, whose header states the model) counts
every access of every on-chip array per loop iteration against the ports its
partitioning gives it. A pipelined iteration that needs more accesses of one
memory bank than its ports allow within the declared II is a port
over-subscription: the loop's II relaxes to what the ports allow (as the HLS
scheduler would), the cycles are counted at that II, and the run lists it.

The instrumented core must still answer bit for bit what ``IntModel.forward``
does; this module checks that on every image it runs.

Inference is one DATAFLOW region (``"schedule": "dataflow"``): a source
stage, one stage a layer (and a dup2 stage where two stages read one array)
and a sink stage. ``cycles_per_inference`` is the region's initiation
interval, its slowest stage: the cycles between two images of a batch.
``latency_cycles`` is one image through every stage, ``message_cycles`` one
whole INFER message (RxWords, the region, the reply), which ``per`` lists.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

import numpy as np

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import IntModel
from hls.inputs import random_codes


class PortOverSubscribed(RuntimeError):
    pass


def _report(core) -> dict:
    fn = core.lib.wq_cycles_report
    fn.argtypes = [ctypes.c_char_p, ctypes.c_int]
    fn.restype = ctypes.c_int
    n = fn(None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    fn(buf, n + 1)
    return json.loads(buf.value.decode())


def measure(model_dir: str | Path, hls_dir: str | Path, n: int = 2, seed: int = 5,
            features: bool = False) -> dict:
    """LOAD_WEIGHTS, then ``n`` INFER messages on the cycle-accounting build.
    Returns the last INFER's accounting plus ``cycles_per_inference`` and
    ``bit_exact`` (every reply equal to the integer reference)."""
    from hls.csim import CSimCore
    from hls.csim_build import build
    from hls.generate import generate

    model_dir, hls_dir = Path(model_dir), Path(hls_dir)
    im = IntModel.load(model_dir)
    generate(model_dir, hls_dir, features=features)
    core = CSimCore(build(hls_dir, cycles=True))
    core.lib.wq_cycles_begin.argtypes = []
    core.lib.wq_cycles_begin.restype = None
    try:
        S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(im)))))
        rng = np.random.default_rng(seed)
        x = random_codes(im.spec, n, rng)
        ref = im.forward(x)
        exact = True
        per = []
        for i in range(n):
            core.lib.wq_cycles_begin()
            reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[i]), i))))
            if features:  # class and logits lead the reply; test_hls_zoo checks the feature map
                nc = im.spec.n_classes
                cls, logits = int(reply.payload[0]), reply.payload[1:1 + nc].view(np.int32)
            else:
                cls, logits = S.parse_result(reply, im.spec.n_classes)
            exact &= bool(np.array_equal(logits, ref[i]) and cls == int(ref[i].argmax()))
            rep = _report(core)
            per.append(rep["cycles"])
    finally:
        core.close()
    # The region's stages: everything but the message around it (core, reply).
    # One image's latency is their sum; images of a batch overlap, so the
    # interval between them is the slowest stage (the dataflow's II).
    message = rep.pop("cycles")
    stages = [l for l in rep["layers"] if l["name"] not in ("core", "reply")]
    slow = max(stages, key=lambda l: l["cycles"])
    rep["schedule"] = "dataflow"
    rep["cycles_per_inference"] = slow["cycles"]
    rep["latency_cycles"] = sum(l["cycles"] for l in stages)
    rep["message_cycles"] = message
    rep["slowest_stage"] = slow["name"]
    rep["cycles_each_inference"] = per
    rep["bit_exact"] = exact
    rep["n_images"] = n
    rep["note"] = ("cycle-accounting C-sim (hls/cycles/wq_cycles_sim.h): a model of the HLS schedule "
                   "from counted memory ports, not a synthesis or RTL simulation result")
    return rep


def table(rep: dict) -> str:
    lines = [f"{'layer':<16}{'cycles':>12}  loops (II achieved/declared)"]
    for l in rep["layers"]:
        loops = ", ".join(f"{x['loop']} {x['ii']}/{x['ii_declared']}" for x in l["loops"] if x["pipelined"])
        lines.append(f"{l['name']:<16}{l['cycles']:>12,}  {loops}")
    lines.append(f"{'interval':<16}{rep['cycles_per_inference']:>12,}  (dataflow II: stage {rep['slowest_stage']})")
    lines.append(f"{'latency':<16}{rep['latency_cycles']:>12,}  (one image through every stage)")
    lines.append(f"{'INFER message':<16}{rep['message_cycles']:>12,}")
    for e in rep.get("fifo_errors", []):
        lines.append(f"FIFO channel misuse: {e}")
    for v in rep["violations"]:
        lines.append(f"port over-subscription: layer {v['layer']}, loop {v['loop']}, array {v['array']}: "
                     f"{v['accesses']} accesses on {v['ports']} ports, II {v['ii_declared']} -> {v['ii_needed']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--hls", type=Path, required=True)
    ap.add_argument("--json", type=Path, default=None, help="write the accounting here (cycles.json)")
    ap.add_argument("--n", type=int, default=2, help="inferences to run")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 on any port over-subscription or FIFO channel misuse (make csim sets it)")
    args = ap.parse_args(argv)
    rep = measure(args.model, args.hls, args.n)
    print(table(rep))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rep, indent=1))
    if not rep["bit_exact"]:
        print("hls.cycles: the instrumented core differs from the integer reference", file=sys.stderr)
        return 1
    if args.strict and rep.get("fifo_errors"):
        print(f"hls.cycles: {len(rep['fifo_errors'])} FIFO channels misused", file=sys.stderr)
        return 1
    if args.strict and rep["violations"]:
        print(f"hls.cycles: {len(rep['violations'])} port over-subscriptions", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
