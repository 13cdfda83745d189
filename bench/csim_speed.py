"""Images per second: our C-sim core (hls.csim over the stream protocol) against
onnxruntime on the QCDQ export of the same Brevitas model, in one run.

    python -m bench.csim_speed [--family wmcnn] [--n 256] [--out build/bench]

Both see the same uint8 maps. Agreement: the class of every image, and the
logits within one logit scale step (the C-sim logits are integers, ORT's are
floats on the 2**logit_scale_log2 grid). Writes csim_speed.json into --out.
Wall-clock numbers from a shared machine: compare within one run only.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def ort_session(model, spec, path: Path, batch: int):
    import onnxruntime as ort
    import torch
    from brevitas.export import export_onnx_qcdq

    # The export fixes the batch dimension, so each batch size gets its own graph.
    example = torch.zeros(batch, spec.in_channels, spec.in_size, spec.in_size)
    export_onnx_qcdq(model.eval(), example, export_path=str(path), dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one core, as the C-sim uses
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def time_ort(sess, x_nchw: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    name = sess.get_inputs()[0].name
    outs, t0 = [], time.perf_counter()
    for i in range(0, len(x_nchw), batch):
        outs.append(sess.run(None, {name: x_nchw[i:i + batch]})[0])
    return np.concatenate(outs), len(x_nchw) / (time.perf_counter() - t0)


def time_csim(export_dir: Path, hls_dir: Path, im, x: np.ndarray) -> tuple[np.ndarray, float]:
    from hls.csim import CSimCore
    from protocol import pixels as PX
    from protocol import stream as S
    from contract import blob

    core = CSimCore.for_model(export_dir, hls_dir)
    S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(im)))))
    logits, t0 = [], time.perf_counter()
    for i in range(len(x)):
        reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[i]), i))))
        logits.append(S.parse_result(reply, im.spec.n_classes)[1])
    return np.array(logits, dtype=np.int64), len(x) / (time.perf_counter() - t0)


def run(family: str, n: int, out: Path) -> dict:
    from bench.hls4ml_flow import make_model, make_spec
    from quant.model import to_input

    spec = make_spec(family, 4, 4)
    model, x, im = make_model(spec, n=max(n, 64))
    x = x[:n]
    work = out / "csim_speed" / spec.name
    im.save(work / "export")
    ref = im.forward(x)
    scale = 2.0 ** im.logit_scale_log2
    row = {"model": spec.name, "n": n}
    xin = to_input(x).numpy()
    for batch in (64, 1):
        sess = ort_session(model, spec, work / f"model.qcdq.b{batch}.onnx", batch)
        o, ips = time_ort(sess, xin[:len(xin) // batch * batch], batch)
        row[f"ort_b{batch}_images_per_s"] = ips
    row["ort_same_class"] = int((o.argmax(1) == ref.argmax(1)).sum())
    row["ort_within_scale"] = int((np.abs(o - ref * scale) <= scale).all(axis=1).sum())
    try:
        c, ips = time_csim(work / "export", work / "hls", im, x)
        row["csim_images_per_s"] = ips
        row["csim_bit_exact"] = int((c == ref).all(axis=1).sum())
        row["csim_same_class_as_ort"] = int((c.argmax(1) == o.argmax(1)).sum())
        row["csim_within_scale_of_ort"] = int((np.abs(c * scale - o) <= scale).all(axis=1).sum())
        row["ratio_csim_over_ort_b1"] = ips / row["ort_b1_images_per_s"]
    except Exception as e:  # the C-sim build is reported, not hidden
        row["csim_error"] = f"{type(e).__name__}: {str(e)[:2000]}"
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="wmcnn")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    row = run(args.family, args.n, args.out)
    for k, v in row.items():
        print(f"{k:<28} {v:.4g}" if isinstance(v, float) else f"{k:<28} {v}")
    (args.out / "csim_speed.json").write_text(json.dumps(row, indent=1))
    return 0 if "csim_error" not in row else 1


if __name__ == "__main__":
    raise SystemExit(main())
