"""Training data for ``quant.train``: synthetic maps, real files, buffer-zone images.

Every map goes through the host's ``to_model_input`` (scale and crop), so
training sees the pixels the production host sends. Inputs come back as
uint8 [N][S][S][1] (HWC with one channel), labels as class indices (or
multi-hot [N][8] for the multi-label task).
"""
from __future__ import annotations

import numpy as np

from contract.preprocess import to_model_input
from quant import synth


def make_inputs(n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic maps preprocessed to uint8 [N][size][size][1], and labels."""
    maps, labels = synth.dataset(n, seed=seed)
    return preprocess(maps, size), labels


def preprocess(maps, size: int) -> np.ndarray:
    return np.stack([to_model_input(m, size) for m in maps])


def add_generated(x: np.ndarray, y: np.ndarray, n: int, size: int, seed: int,
                  classes=synth.WAFER_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """The training rows plus ``n`` maps of the real-calibrated generator
    (``profile="wm811k"``), balanced over ``classes``. Only training rows
    grow: validation and test stay real."""
    xg, yg = generated(n, size, seed, classes)
    return np.concatenate([x, xg]), np.concatenate([y, yg])


def generated(n: int, size: int, seed: int, classes=synth.WAFER_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """``n`` maps of the real-calibrated generator (``profile="wm811k"``),
    balanced over ``classes``, as model inputs and labels."""
    maps, labels = synth.dataset(n, seed=seed, classes=classes, profile="wm811k")
    return preprocess(maps, size), labels


# Generated maps for a run of seed s are drawn with seed s + GENERATED_SEED, so
# quant.train and bench.accuracy_vs_bits train on the same ones.
GENERATED_SEED = 17


def pretrain_set(n: int, epochs: int, size: int, seed: int, classes=synth.WAFER_CLASSES) -> tuple:
    """``fit.float_twin``'s ``pretrain`` argument: (maps, labels, epochs) of
    ``n`` generated maps for a run of ``seed``."""
    return (*generated(n, size, seed + GENERATED_SEED, classes), epochs)


def load_buffer(args):
    """Buffer-zone images [N][S][S][1], labels and truth (train and test)."""
    from quant import buffer_synth

    x, y, t = buffer_synth.dataset(args.n_train, seed=args.seed, size=args.size)
    xt, yt, tt = buffer_synth.dataset(args.n_test, seed=args.seed + 1000, size=args.size)
    return x[..., None], y, xt[..., None], yt, t, tt


def split_seed(cfg) -> int:
    """The seed that picks a run's test and validation rows (a dict of its
    options or an argparse namespace): --split-seed, else --seed."""
    cfg = cfg if isinstance(cfg, dict) else vars(cfg)
    return cfg["seed"] if cfg.get("split_seed") is None else cfg["split_seed"]


VAL_FOLDS = 10      # --val-fold's parts: each validation part is a tenth of a class's training rows


def val_fold(cfg) -> int:
    """Which tenth of the training rows a run validates on: --val-fold, 0 for
    runs from before the option."""
    cfg = cfg if isinstance(cfg, dict) else vars(cfg)
    return cfg.get("val_fold") or 0


def load_data(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test), uint8 HWC inputs and class indices."""
    if args.family == "xception_fpn" and args.data is None:
        return load_buffer(args)[:4]
    if args.data is None:
        x, y = make_inputs(args.n_train, args.seed, args.size)
        return (*_pick_classes(x, y, args), *_pick_classes(*make_inputs(args.n_test, args.seed + 1000,
                                                                        args.size), args))
    if args.data.is_dir():
        # a cache from quant.datasets.stream: batches are read from its memory map
        from quant.datasets.cache import open_cache

        cache = open_cache(args.data)
        x, y, xt, yt = cache.arrays(args.size, n_classes=8 if args.eight_classes else 9, seed=split_seed(args))
        print(f"{args.data}: {len(y)} train and {len(yt)} test maps from the {args.size}x{args.size} cache "
              f"({cache.meta['unlabelled']} unlabelled rows not used)")
        return x, y, xt, yt
    if args.data.suffix == ".pkl":
        loaded = load_pkl(args)
        print(f"{args.data}: {len(loaded.train.labels)} train and {len(loaded.test.labels)} test maps "
              f"(split from {loaded.split_source}; skipped {loaded.skipped})")
        return loaded.train.maps, loaded.train.labels, loaded.test.maps, loaded.test.labels
    if args.data.suffix == ".npz":
        with np.load(args.data, allow_pickle=True) as z:
            if "x" not in z.files or "y" not in z.files:
                raise SystemExit(f"{args.data}: expected arrays 'x' (maps) and 'y' (labels), found {z.files}")
            x, y = preprocess(list(z["x"]), args.size), z["y"].astype(np.int64)
        order = np.random.default_rng(split_seed(args)).permutation(len(x))
        n_test = max(1, len(x) // 5)
        return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]
    raise SystemExit(f"{args.data}: unsupported data file (use LSWMD .pkl or an NPZ with x and y)")


def load_pkl(args):
    """A run's LSWMD .pkl as ``wm811k.Loaded``: the rows ``load_data`` trains
    and tests on, in the same order, with their row positions in the file."""
    from quant.datasets import wm811k

    return wm811k.load(args.data, n_classes=8 if args.eight_classes else 9, size=args.size,
                       limit=args.limit, seed=split_seed(args))


def regridded(args, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``--grid-variants``: the training rows ``rows`` of a real .pkl as
    [N][V][S][S][1] grid-size variants (``quant.gridscale``), ``x`` (their
    plain model inputs) first. The file is read again for its raw maps
    (``train_args.check`` has made sure it is a .pkl)."""
    from quant import gridscale
    from quant.datasets import wm811k

    loaded = wm811k.load(args.data, n_classes=8 if args.eight_classes else 9, size=None,
                         limit=args.limit, seed=split_seed(args))
    maps = [loaded.train.maps[i] for i in rows]
    print(f"training on {len(maps)} maps, each also at {args.grid_variants} other die counts "
          f"(factors {args.grid_scale[0]:g} to {args.grid_scale[1]:g})")
    return gridscale.variants(maps, x, args.size, args.grid_variants, args.seed + GENERATED_SEED,
                              tuple(args.grid_scale))


def _pick_classes(x, y, args):
    if not args.eight_classes:
        return x, y
    keep = y != synth.WAFER_CLASSES.index("none")
    return x[keep], y[keep]


def load_multilabel(args):
    """(x, y, x_test, y_test): inputs [N][S][S][1] and multi-hot uint8 [N][8]."""
    if args.data is not None:
        from quant.datasets import mixedwm38

        x, y = mixedwm38.load(args.data, size=args.size)
        if args.limit:
            x, y = x[:args.limit], y[:args.limit]
        order = np.random.default_rng(split_seed(args)).permutation(len(x))
        n_test = max(1, len(x) // 5)
        return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]
    maps, y, _ = synth.mixed_dataset(args.n_train, seed=args.seed)
    maps_t, yt, _ = synth.mixed_dataset(args.n_test, seed=args.seed + 1000)
    return preprocess(list(maps), args.size), y, preprocess(list(maps_t), args.size), yt
