"""Our flow against hls4ml's, side by side, on wmcnn and every wafer-map zoo family at W4A4.

    python -m bench.hls4ml_compare [--n 32] [--out build/bench]

For each model, one briefly trained Brevitas model goes through both flows:
ours (integer export -> hls.generate -> C-sim over the stream protocol) and
hls4ml's (bench.hls4ml_flow: QONNX -> hls4ml Vitis io_stream -> compile). Each
is compared with the integer reference bit for bit; C-sim speed is images/s
of each compiled model on this machine. A model a flow cannot take is a row
with the stage and the exception text. Writes hls4ml_compare.json and .md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import hls4ml_flow as F
from contract import zoo

MODELS = ("wmcnn", *zoo.WAFER_FAMILIES)
FEATURES = [
    ("weights", "loaded at run time (LOAD_WEIGHTS), one bitstream a topology",
     "constants in the bitstream, one synthesis a weight set"),
    ("interface", "one AXI-Stream protocol (QUERY / LOAD_WEIGHTS / INFER, checksums, errors)",
     "raw activation streams, no framing"),
    ("execution", "layers one after another, folding per layer (pe/simd)",
     "dataflow pipeline of layers (io_stream), reuse factor per layer"),
    ("layers", "what hls.generate supports (see hls/generate.py)",
     "what its ONNX frontend parses (ReduceSum/GAP from Brevitas is not)"),
]


def ours(spec, made, work: Path, n: int) -> dict:
    from bench.csim_speed import time_csim

    model, x, im = made
    try:
        im.save(work / "export")
        logits, ips = time_csim(work / "export", work / "hls", im, x[:n])
        ref = im.forward(x[:n])
        return {"status": "ok", "bit_exact": int((logits == ref).all(axis=1).sum()),
                "images_per_s": ips}
    except Exception as e:
        return {"status": "unsupported", "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}


def run(n: int, out: Path) -> list[dict]:
    rows = []
    for family in MODELS:
        spec = F.make_spec(family, 4, 4)
        work = out / "hls4ml_compare" / spec.name
        try:
            made = F.make_model(spec)
        except Exception as e:
            rows.append({"model": spec.name, "ours": {"status": "failed", "error": str(e)},
                         "hls4ml": {"status": "failed", "error": str(e)}, "n": n})
            continue
        h = F.run(spec, work, n=n, made=made)
        h.pop("traceback", None)
        rows.append({"model": spec.name, "n": n, "ours": ours(spec, made, work, n),
                     "hls4ml": {k: h.get(k) for k in ("status", "stage", "error", "bit_exact",
                                                      "predict_images_per_s", "compile_s")}})
    return rows


def _cell(r: dict, speed: str) -> tuple[str, str]:
    if r["status"] != "ok" and r.get("bit_exact") is None:
        return f"{r['status']}: {r.get('error')}", "-"
    return f"{r['bit_exact']}", f"{r[speed]:.1f}"


def markdown(rows: list[dict]) -> str:
    out = ["| model | ours bit-exact | ours img/s | hls4ml bit-exact | hls4ml img/s | hls4ml compile s |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        o, h = _cell(r["ours"], "images_per_s"), _cell(r["hls4ml"], "predict_images_per_s")
        cs = r["hls4ml"].get("compile_s")
        out.append(f"| {r['model']} | {o[0]} / {r['n']} | {o[1]} | {h[0]} / {r['n']} | {h[1]} | "
                   f"{cs:.0f} |" if cs else f"| {r['model']} | {o[0]} / {r['n']} | {o[1]} | {h[0]} | {h[1]} | - |")
    out += ["", "| feature | ours | hls4ml |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in FEATURES]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    args = ap.parse_args(argv)
    rows = run(args.n, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hls4ml_compare.json").write_text(json.dumps(rows, indent=1))
    md = markdown(rows)
    (args.out / "hls4ml_compare.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
