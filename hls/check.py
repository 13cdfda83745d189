"""`make csim`'s check: the built C-sim against the integer reference, bit for bit.

    python -m hls.check --model build/X/export --hls build/X/hls [--n 200]

Loads the weight blob through LOAD_WEIGHTS, then sends inputs through INFER,
one stream message each, and compares every logit with ``IntModel.forward``.
A wafer-map model gets synthetic wafer maps and random images; an imported
graph (family "graph", ``make import``) gets random codes of its input shape
within its ``in_bits`` (``hls.inputs``), since wafer maps mean nothing to it.
Exit status 1 on any difference.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from contract.preprocess import to_model_input
from protocol import stream as S
from contract import blob
from quant import synth
from contract.intmodel import IntModel
from hls.inputs import random_codes


def compare(model_dir: Path, hls_dir: Path, n: int, seed: int = 11) -> tuple[int, int]:
    from hls.csim import CSimCore

    im = IntModel.load(model_dir)
    core = CSimCore.for_model(model_dir, hls_dir)
    S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(im)))))
    rng = np.random.default_rng(seed)
    x = []
    if im.spec.family != "graph":
        maps, _ = synth.dataset(n // 2, seed=seed)
        x = [to_model_input(m, im.spec.in_size) for m in maps]
    x = np.stack(x + list(random_codes(im.spec, n - len(x), rng)))
    ref = im.forward(x)
    equal = 0
    for i in tqdm(range(len(x)), desc="C-sim vs integer reference"):
        reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, S.pack_pixels(x[i]), i))))
        cls, logits = S.parse_result(reply, im.spec.n_classes)
        equal += int(np.array_equal(logits, ref[i]) and cls == int(ref[i].argmax()))
    return equal, len(x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--hls", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args(argv)
    equal, total = compare(args.model, args.hls, args.n)
    print(f"C-sim equals the integer reference on {equal}/{total} inputs")
    return 0 if equal == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
