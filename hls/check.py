"""`make csim`'s check: the built C-sim against the integer reference, bit for bit.

    python -m hls.check --model build/X/export --hls build/X/hls [--n 200]

Loads the weight blob through LOAD_WEIGHTS, then sends inputs through INFER,
one stream message each, and compares every logit with ``IntModel.forward``.
A wafer-map model gets synthetic wafer maps and random images; an imported
graph (family "graph", ``make import``) gets random codes of its input shape
within its ``in_bits`` (``hls.inputs``), since wafer maps mean nothing to it.
Then INFER_BATCH: batches of 1, 16, 64 and the core's max_batch in every
packing QUERY reports, and a batch whose middle image is bad (PACK_DIE2: a die
state of 3; an imported graph's PACK_U8: a code above its in_bits), which must
get that image alone an error record. Exit status 1 on any difference.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from contract.preprocess import to_model_input
from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from quant import synth
from contract.intmodel import IntModel
from hls.inputs import code_max, random_codes

BATCH_SIZES = (1, 16, 64)


def compare(model_dir: Path, hls_dir: Path, n: int, seed: int = 11, core=None) -> tuple[int, int]:
    from hls.csim import CSimCore

    im = IntModel.load(model_dir)
    core = core or CSimCore.for_model(model_dir, hls_dir)
    S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(im)))))
    x = _inputs(im, n, seed)
    ref = im.forward(x)
    equal = 0
    for i in tqdm(range(len(x)), desc="C-sim vs integer reference"):
        reply = S.raise_if_error(S.decode(core.transact(S.encode(S.OP_INFER, PX.pack_pixels(x[i]), i))))
        cls, logits = S.parse_result(reply, im.spec.n_classes)
        equal += int(np.array_equal(logits, ref[i]) and cls == int(ref[i].argmax()))
    return equal, len(x)


def _inputs(im: IntModel, n: int, seed: int) -> np.ndarray:
    """Half synthetic wafer maps, half random codes; only random codes for an
    imported graph, to which wafer maps mean nothing."""
    rng = np.random.default_rng(seed)
    x = []
    if im.spec.family != "graph":
        maps, _ = synth.dataset(n // 2, seed=seed)
        x = [to_model_input(m, im.spec.in_size) for m in maps]
    return np.stack(x + list(random_codes(im.spec, n - len(x), rng)))


def compare_batches(model_dir: Path, hls_dir: Path, seed: int = 13, core=None) -> list[str]:
    """Every INFER_BATCH case above; returns one line a failed case (empty: all equal)."""
    from hls.csim import CSimCore

    im = IntModel.load(model_dir)
    core = core or CSimCore.for_model(model_dir, hls_dir)
    S.raise_if_error(S.decode(core.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(im)))))
    q = S.parse_query(S.decode(core.transact(S.encode(S.OP_QUERY, [], 1))))
    k, m = im.spec.n_classes, q["max_batch"]
    rng = np.random.default_rng(seed)
    failures = []
    for packing in [p for p in S.PACKINGS.values() if q["packings"] >> p & 1]:
        name = next(k for k, v in S.PACKINGS.items() if v == packing)
        for n in sorted({*BATCH_SIZES, m}):
            states = rng.integers(0, 3, (n, *im.input_shape), dtype=np.uint8)
            if packing == S.PACK_DIE2:
                images, pixels = states, PX.pixels_from_die_states(states)
            else:
                images = pixels = random_codes(im.spec, n, rng)
            bad = np.zeros(n, bool)
            cases = [(images, bad, "")]
            # A bad image in the middle: a die state of 3, or a code above in_bits.
            spoil, bad_code = ((3, S.ERR_BAD_PIXEL) if packing == S.PACK_DIE2 else
                               (code_max(im.spec) + 1, S.ERR_BAD_INPUT))
            if n > 1 and spoil <= 255:
                spoiled = images.copy()
                spoiled[n // 2].flat[n % spoiled[0].size] = spoil
                bad_one = bad.copy()
                bad_one[n // 2] = True
                cases.append((spoiled, bad_one, ", one bad image"))
            want_cls, want = im.classify(pixels)
            for imgs, bad_mask, what in cases:
                status, cls, logits = core.infer_batch(imgs, k, packing, tag=n)
                ok = ~bad_mask
                good = ((status[ok] == 0).all() and (status[bad_mask] == bad_code).all()
                        and not logits[bad_mask].any()
                        and np.array_equal(logits[ok], want[ok].astype(np.int64).astype(np.int32))
                        and np.array_equal(cls[ok], want_cls[ok]))
                line = f"INFER_BATCH {name} n={n}{what}"
                print(f"{line}: {'bit-exact' if good else 'DIFFERS'}")
                if not good:
                    failures.append(line)
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--hls", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args(argv)
    from hls.csim import CSimCore

    core = CSimCore.for_model(args.model, args.hls)
    equal, total = compare(args.model, args.hls, args.n, core=core)
    print(f"C-sim equals the integer reference on {equal}/{total} inputs")
    failures = compare_batches(args.model, args.hls, core=core)
    for f in failures:
        print(f"C-sim differs from the integer reference: {f}")
    return 0 if equal == total and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
