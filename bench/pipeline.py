"""Images per second of each way to run the exported model, measured in one run.

    python -m bench.pipeline --model build/wmcnn_4w4a/export --hls build/wmcnn_4w4a/hls

Rows: the numpy integer reference (batched), the reference core (one stream
message an image, as the ``reference`` backend runs it), the C-sim library
(one message an image, word by word through ctypes, as the ``csim`` backend
runs it) and Brevitas on torch when it is installed. Absolute times depend on
the machine; the ratio column, against the C-sim in the same run, is what to
compare across machines. Writes ``pipeline.json`` in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import IntModel


def _time(fn, n_images: int, min_seconds: float = 1.0) -> float:
    """Images per second of ``fn`` (which handles ``n_images``), best of repeated runs."""
    best, spent = 0.0, 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, n_images / dt)
    return best


def _per_message(transact, images):
    def run():
        for i, img in enumerate(images):
            S.raise_if_error(S.decode(transact(S.encode(S.OP_INFER, PX.pack_pixels(img), i))))
    return run


def measure(model_dir: Path, hls_dir: Path | None, n: int, seed: int) -> list[dict]:
    from hls.refcore import RefCore

    im = IntModel.load(model_dir)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *im.input_shape), dtype=np.uint8)
    words = blob.pack(im)
    rows = [{"path": "integer reference (numpy, batched)",
             "images_per_s": _time(lambda: im.forward(images), n)}]
    core = RefCore(im.spec)
    S.raise_if_error(S.decode(core.handle(S.encode(S.OP_LOAD_WEIGHTS, words))))
    rows.append({"path": "reference core (message per image)",
                 "images_per_s": _time(_per_message(core.handle, images), n)})
    if hls_dir is not None:
        from hls.csim import CSimCore

        csim = CSimCore.for_model(model_dir, hls_dir)
        S.raise_if_error(S.decode(csim.transact(S.encode(S.OP_LOAD_WEIGHTS, words))))
        rows.append({"path": "C-sim library (message per image)",
                     "images_per_s": _time(_per_message(csim.transact, images), n)})
    try:
        import torch  # noqa: F401  (only to ask whether it is installed: the host has none)
    except ImportError:
        return rows
    rows.append(_brevitas_row(model_dir, images))
    return rows


def _brevitas_row(model_dir: Path, images: np.ndarray) -> dict:
    import torch

    from quant.model import to_input
    from quant.train import load_checkpoint

    ckpt = model_dir.parent / "train" / "checkpoint.pt"
    if not ckpt.exists():
        return {"path": "Brevitas (torch)", "images_per_s": None, "note": f"no {ckpt}"}
    model = load_checkpoint(ckpt)
    x = to_input(images)
    with torch.no_grad():
        return {"path": "Brevitas (torch, batched)",
                "images_per_s": _time(lambda: model(x), len(images))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="export folder (model.json)")
    ap.add_argument("--hls", type=Path, help="HLS folder for the C-sim (generated and built if needed)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200, help="images a timed pass")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = measure(args.model, args.hls, args.n, args.seed)
    base = next((r["images_per_s"] for r in rows if r["path"].startswith("C-sim")), None)
    print(f"{'path':40s} {'images/s':>12s} {'x C-sim':>8s}")
    for r in rows:
        ips = r["images_per_s"]
        r["ratio_to_csim"] = ips / base if (ips and base) else None
        ratio = f"{r['ratio_to_csim']:8.2f}" if r["ratio_to_csim"] else f"{'-':>8s}"
        print(f"{r['path']:40s} {ips if ips is None else round(ips, 1)!s:>12s} {ratio}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps({"n_images": args.n, "rows": rows}, indent=1))
    print(f"wrote {args.out / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
