"""Train a model family: FP32 pre-training, QAT fine-tuning, report.

    python -m quant.train --out build/wmcnn_4w4a/train                # synthetic wafer maps
    python -m quant.train --out DIR --data LSWMD.pkl --limit 4000     # real WM-811K
    python -m quant.train --out DIR --family xception_fpn             # synthetic buffer zone (+ CAM sizes)
    python -m quant.train --config quant/configs/vgg_s_4w4a.json --out DIR [--qat-epochs 2 ...]
    python -m quant.train --out DIR --resume                          # continue an interrupted run
    python -m quant.train --out DIR --family mobilenet_s --distill-from TEACHER/fp32.pt
    python -m quant.train --out DIR --multilabel [--data MixedWM38.npz]

Maps go through the host's ``to_model_input``, the same code the production
host runs, so training and inference see identical pixels.

Writes ``checkpoint.pt`` (the QAT model: state dict + spec), ``fp32.pt`` (the
float twin), ``metrics.json``, ``report.html`` with the confusion matrices and
the coverage/accuracy curve of the reject option, whose calibrated threshold
is stored in ``metrics.json`` for the host. ``fp32.state.pt`` and
``qat.state.pt`` hold the state after each epoch (``--resume`` continues).

Config files (``quant/configs/*.json``) hold any of the long options below,
by their argparse names (``w_bits``, ``qat_epochs``, ...); bit widths may be
one number or a list, one entry per weighted (``w_bits``) or requantizing
(``a_bits``) layer. Options on the command line override the file.

For ``xception_fpn`` the report adds the CAM defect-size evaluation
(``quant.cam``): the CAM-guided measurement, the binarized CAM alone and the
image alone, each with its threshold and linear correction calibrated on the
validation split; MAPE per quantity on the test split, overlay PNGs.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from quant import metrics, synth
from quant.cam_report import cam_html, cam_lines, cam_report
from quant.fit import distill, fit, from_float, predict_logits, train_qat
from quant.floatnet import FloatNet
from quant.model import GraphNet
from contract.spec import CNNSpec, spec_from_dict
from quant.traindata import (GENERATED_SEED, add_generated, load_buffer, load_data, load_multilabel, regridded,
                             pretrain_set, split_seed, val_fold, VAL_FOLDS)
from quant.train_args import bits_arg, config_of, parse_args
from contract.zoo import WAFER_FAMILIES, ZooSpec, buffer_spec


def train(spec, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, batch: int = 64,
          lr: float = 2e-3, **kw) -> GraphNet:
    """QAT from scratch (no float pre-training): the quick path the tests use."""
    torch.manual_seed(seed)
    return fit(GraphNet(spec), x, y, epochs, seed, batch=batch, lr=lr, desc="qat", **kw)


def save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    kind = "float" if isinstance(model, FloatNet) else "quant"
    torch.save({"spec": model.spec.to_dict(), "kind": kind, "state_dict": model.state_dict()}, path)


def load_checkpoint(path: Path) -> GraphNet:
    """The quantized model of a checkpoint (a float one is quantized to its spec's bits)."""
    model = load_any(path)
    if isinstance(model, FloatNet):
        raise ValueError(f"{path} holds a float model; use load_any")
    return model


def load_any(path: Path) -> torch.nn.Module:
    """A FloatNet or GraphNet, whichever the checkpoint holds."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    spec = spec_from_dict(ckpt["spec"])
    kind = ckpt.get("kind") or ("quant" if any(".weight_quant." in k or "act_quant" in k
                                              for k in ckpt["state_dict"]) else "float")
    model = FloatNet(spec) if kind == "float" else GraphNet(spec)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def make_spec(args):
    w, a = bits_arg(args.w_bits), bits_arg(args.a_bits)
    width = getattr(args, "width", None)
    if args.family == "wmcnn":
        kw = dict(in_size=args.size, classes=tuple(args.classes),
                  die_channels=bool(getattr(args, "die_channels", False)))
        if getattr(args, "name", None):
            kw["name"] = args.name
        if getattr(args, "channels", None):
            kw["channels"] = tuple(args.channels)
        elif width:
            kw["channels"] = (width, 2 * width, 4 * width)
        if getattr(args, "block_convs", None):
            kw["block_convs"] = tuple(args.block_convs)
        return CNNSpec.with_bits(w, a, **kw)
    if args.family == "xception_fpn":
        return buffer_spec(w, a, in_size=args.size, width=width or 8)
    return ZooSpec(args.family, in_size=args.size, w_bits=w, a_bits=a, classes=tuple(args.classes),
                   width=width or 16)


def val_split(y: np.ndarray, seed: int, fold: int = 0, n_folds: int = VAL_FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified validation split (1/n_folds of each class, at
    least one) and of the rest. Real files are sorted by class, so the first
    rows would be one class. ``fold`` K takes the K-th of the n_folds equal
    parts of each class's shuffled rows (fold 0, the default, is the part
    every run validated on before the option), so that folds 0 to
    n_folds - 1 cover every training row once."""
    if not 0 <= fold < n_folds:
        raise ValueError(f"validation fold {fold}: there are {n_folds} (0 to {n_folds - 1})")
    rng = np.random.default_rng(seed + 7)
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) > 1:
            bounds = [int(round(len(idx) * k / n_folds)) for k in range(n_folds + 1)]
            bounds[1] = max(1, bounds[1])           # at least one row for the default part
            bounds = np.maximum.accumulate(bounds)
            val.extend(idx[bounds[fold]:bounds[fold + 1]])
    val = np.sort(np.asarray(val, dtype=np.int64))
    rest = np.setdiff1d(np.arange(len(y)), val)
    return val, rest


def validation_rows(y: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray]:
    """A run's validation part and the rest, from its options (a dict or an
    argparse namespace): --split-seed (else --seed) and --val-fold."""
    return val_split(y, split_seed(cfg), fold=val_fold(cfg))


def fit_rows(y: np.ndarray, rest: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified ``fraction`` of the fitting rows ``rest`` (each class's
    count rounded, at least one), drawn with ``seed`` + 1234; all of them at
    1. Validation and held-out rows are not touched, so runs at several
    fractions draw a learning curve on the same maps."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the fitting fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return rest
    # Its own seed: with val_split's (seed + 7) the draw would replay the
    # random numbers that picked the validation rows.
    rng = np.random.default_rng(seed + 1234)
    keep = [rng.choice(rows, max(1, int(round(fraction * len(rows)))), replace=False)
            for rows in (rest[y[rest] == c] for c in np.unique(y[rest]))]
    return np.sort(np.concatenate(keep))


def take_rows(x, idx):
    # A memory-mapped cache (quant.datasets.cache.Rows) stays a view.
    if hasattr(x, "rows") and hasattr(x, "mm"):
        return type(x)(x.mm, x.rows[idx])
    return x[idx]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _train_kw(args) -> dict:
    return dict(batch=args.batch, loss=args.loss, balanced=args.balanced, gamma=args.gamma, lr=args.lr,
                augment=args.augment, optimizer=args.optimizer, weight_decay=args.weight_decay,
                sam=args.sam)


def run(args) -> dict:
    seed_everything(args.seed)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.multilabel:
        return run_multilabel(args)
    if args.eight_classes:
        args.classes = tuple(c for c in synth.WAFER_CLASSES if c != "none")
    spec = make_spec(args)
    truth = None
    if args.family == "xception_fpn" and args.data is None:
        x, y, x_test, y_test, t_train, t_test = load_buffer(args)
        truth = (t_train, t_test)
    else:
        x, y, x_test, y_test = load_data(args)
    val, rest = validation_rows(y, args)
    if args.fit_fraction < 1:
        n = len(rest)
        rest = fit_rows(y, rest, args.fit_fraction, split_seed(args))
        print(f"fitting on {len(rest)} of {n} rows ({args.fit_fraction:g})")
    x_val, y_val, x, y = take_rows(x, val), y[val], take_rows(x, rest), y[rest]
    if truth is not None:
        truth = ({k: v[val] for k, v in truth[0].items()}, truth[1])
    if args.synth_maps:
        if args.data is None or args.family == "xception_fpn":
            raise SystemExit("--synth-maps adds generated wafer maps to a real file's training rows; give --data")
        x, y = add_generated(x, y, args.synth_maps, x.shape[1], args.seed + GENERATED_SEED, spec.classes)
        print(f"training on {len(y) - args.synth_maps} real and {args.synth_maps} generated maps")
    # (check() refuses --grid-variants with --synth-maps, so x here is the real rows)
    x_fit = regridded(args, x, rest) if args.grid_variants else x
    if args.pretrain_maps and (args.data is None or args.family == "xception_fpn"):
        raise SystemExit("--pretrain-maps starts a real file's wafer-map model on generated maps; give --data")
    if args.distill_from:
        return run_distill(args, spec, x, y, x_test, y_test)
    pretrain = None
    if args.pretrain_maps:
        pretrain = pretrain_set(args.pretrain_maps, args.pretrain_epochs, x.shape[1], args.seed, spec.classes)
        print(f"pretraining on {args.pretrain_maps} generated maps for {args.pretrain_epochs} epochs")
    nv = args.views
    if nv > 1 and (args.family == "xception_fpn" or spec.in_channels != 1):
        raise SystemExit("--views 8 is for wafer maps: a buffer-zone image has a fixed radial direction")
    t0 = time.time()
    fp, q = train_qat(spec, x_fit, y, args.fp_epochs, args.qat_epochs, args.seed, state_dir=args.out,
                      resume=args.resume, qat_lr=args.qat_lr, bn=args.bn, equalize=args.equalize,
                      act_init=args.act_init, init=args.init, average_last=args.average_last,
                      pretrain=pretrain, swa_epochs=args.swa_epochs, swa_lr=args.swa_lr, **_train_kw(args))
    results = {"model": spec.name, "spec": spec.to_dict(), "config": config_of(args), "train_seconds": None}
    logits = {"fp32": predict_logits(fp, x_test, n_views=nv), "qat": predict_logits(q, x_test, n_views=nv)}
    if args.ptq:
        ptq_spec = make_spec(argparse.Namespace(**{**vars(args), "w_bits": 8, "a_bits": 8}))
        logits["ptq8"] = predict_logits(from_float(ptq_spec, fp, x[:512]), x_test, n_views=nv)
    results["train_seconds"] = time.time() - t0
    results["views"] = nv
    for key, lg in logits.items():
        results[key] = metrics.summary(y_test, lg.argmax(1), spec.classes)
    if nv > 1:   # what one view of each map gives, for comparison
        results["qat_1view"] = metrics.summary(y_test, predict_logits(q, x_test).argmax(1), spec.classes)
    val_logits = predict_logits(q, x_val, n_views=nv)
    # Validation figures too: the recipe's choices were made on this split.
    results["val_qat"] = metrics.summary(y_val, val_logits.argmax(1), spec.classes)
    results["val_fp32"] = metrics.summary(y_val, predict_logits(fp, x_val, n_views=nv).argmax(1), spec.classes)
    reject = metrics.calibrate_reject(val_logits, y_val, args.target_accuracy,
                                      x_val=x_val if spec.in_channels == 1 else None)
    results["reject"] = {**reject, **metrics.summary(y_test, metrics.apply_reject(logits["qat"], reject, x_test),
                                                     spec.classes)}
    if spec.in_channels == 1 and args.family != "xception_fpn":
        results["ood"] = ood_report(q, reject, args.size, args.seed, n_views=nv)
    results["coverage_curve"] = metrics.coverage_curve(metrics.softmax(logits["qat"], reject["temperature"]),
                                                       y_test)
    save_checkpoint(q, args.out / "checkpoint.pt")
    save_checkpoint(fp, args.out / "fp32.pt")
    figures = []
    for key in logits:
        cm = np.array(results[key]["confusion"])
        metrics.plot_confusion(cm, spec.classes, args.out / f"confusion_{key}.png",
                               f"{spec.name} {key}: {100 * results[key]['accuracy']:.1f}%")
        figures.append(f"confusion_{key}.png")
    metrics.plot_coverage(results["coverage_curve"], args.out / "coverage.png", spec.name)
    figures.append("coverage.png")
    extra = ""
    if truth is not None and not args.no_cam:
        results["int"], results["cam"], cam_figs = cam_report(q, x_val, y_val, truth[0], x_test, y_test, truth[1],
                                                               spec, args)
        figures += cam_figs
        extra = cam_html(results["cam"])
    metrics.write_report(args.out, spec.name, spec.classes, results, figures, extra_html=extra)
    (args.out / "metrics.json").write_text(json.dumps(results, indent=1))
    return results


def ood_report(q, reject: dict, size: int, seed: int, n: int = 100, n_views: int = 1) -> dict:
    """Share of each group of non-wafer / out-of-class inputs (``quant.ood``)
    that the calibrated reject option sends to review, and why."""
    from quant import ood

    out = {}
    for name, x in ood.all_groups(n, size, seed + 500).items():
        why = metrics.reject_reasons(predict_logits(q, x, n_views=n_views), reject, x)
        out[name] = {"n": n, "rejected": sum(r is not None for r in why) / n,
                     **{r: why.count(r) for r in metrics.REASONS if why.count(r)}}
    return out


def run_distill(args, spec, x, y, x_test, y_test) -> dict:
    """Student ``spec`` trained on the maps ``x`` by the teacher alone (labels
    unused), then the same student trained with labels, for comparison."""
    teacher = load_any(args.distill_from)
    if teacher.spec.in_size != spec.in_size or tuple(teacher.spec.classes) != tuple(spec.classes):
        raise SystemExit(f"{args.distill_from}: teacher input {teacher.spec.in_size} / classes do not match "
                         f"the student ({spec.in_size})")
    t0 = time.time()
    untrained = from_float(spec, FloatNet(spec), x[:512])
    results = {"model": spec.name, "teacher": str(args.distill_from), "config": config_of(args),
               "untrained": metrics.summary(y_test, predict_logits(untrained, x_test).argmax(1), spec.classes),
               "teacher_fp": metrics.summary(y_test, predict_logits(teacher, x_test).argmax(1), spec.classes)}
    torch.manual_seed(args.seed)
    fp = distill(teacher, FloatNet(spec), x, args.fp_epochs, args.seed, batch=args.batch, lr=args.lr,
                 temperature=args.temperature, augment=args.augment)
    q = from_float(spec, fp, x[:512])
    distill(teacher, q, x, args.qat_epochs, args.seed + 1, batch=args.batch,
            lr=args.qat_lr or args.lr / 2, temperature=args.temperature, augment=args.augment)
    results["distilled_fp32"] = metrics.summary(y_test, predict_logits(fp, x_test).argmax(1), spec.classes)
    results["distilled"] = metrics.summary(y_test, predict_logits(q, x_test).argmax(1), spec.classes)
    results["distill_seconds"] = time.time() - t0
    save_checkpoint(q, args.out / "checkpoint.pt")
    save_checkpoint(fp, args.out / "fp32.pt")
    if not args.no_compare:
        fp_l, q_l = train_qat(spec, x, y, args.fp_epochs, args.qat_epochs, args.seed, qat_lr=args.qat_lr,
                              **_train_kw(args))
        results["labelled_fp32"] = metrics.summary(y_test, predict_logits(fp_l, x_test).argmax(1), spec.classes)
        results["labelled"] = metrics.summary(y_test, predict_logits(q_l, x_test).argmax(1), spec.classes)
    metrics.write_report(args.out, f"{spec.name} distilled from {Path(args.distill_from).name}",
                         spec.classes, results, [])
    (args.out / "metrics.json").write_text(json.dumps(results, indent=1))
    return results


def run_multilabel(args) -> dict:
    """Sigmoid/BCE head on mixed patterns; a label is present when its logit > 0.
    The integer path is unchanged: the accelerator's logits, thresholded at 0."""
    from quant.datasets import multilabel
    from quant.export import to_intmodel

    args.classes = synth.MIXED_PATTERNS
    spec = make_spec(args)
    x, y, x_test, y_test = load_multilabel(args)
    t0 = time.time()
    kw = {**_train_kw(args), "loss": "bce", "balanced": "none"}
    fp, q = train_qat(spec, x, y.astype(np.float32), args.fp_epochs, args.qat_epochs, args.seed,
                      state_dir=args.out, resume=args.resume, qat_lr=args.qat_lr, **kw)
    results = {"model": spec.name + "_multilabel", "spec": spec.to_dict(), "config": config_of(args),
               "train_seconds": time.time() - t0}
    for key, model in (("fp32", fp), ("qat", q)):
        results[key] = multilabel.report(y_test, predict_logits(model, x_test) > 0, spec.classes)
    im = to_intmodel(q, x[:2])
    n_int = min(len(x_test), 200)
    int_pred = im.forward(x_test[:n_int]) > 0
    results["int"] = {**multilabel.report(y_test[:n_int], int_pred, spec.classes), "n": n_int,
                      "equals_brevitas": bool(np.array_equal(int_pred, predict_logits(q, x_test[:n_int]) > 0))}
    save_checkpoint(q, args.out / "checkpoint.pt")
    save_checkpoint(fp, args.out / "fp32.pt")
    metrics.write_multilabel_report(args.out, results["model"], spec.classes, results)
    (args.out / "metrics.json").write_text(json.dumps(results, indent=1))
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.family not in ("wmcnn", *WAFER_FAMILIES, "xception_fpn"):
        raise SystemExit(f"unknown family {args.family}")
    res = run(args)
    if args.multilabel:
        q = res["qat"]
        print(f"{res['model']}: exact match {100 * q['exact_match']:.1f}%, hamming {q['hamming_loss']:.4f}, "
              f"macro-F1 {q['macro_f1']:.3f}; report in {args.out / 'report.html'}")
        return 0
    if args.distill_from:
        line = "  ".join(f"{k} {100 * res[k]['accuracy']:.2f}%" for k in
                         ("teacher_fp", "untrained", "distilled", "labelled") if k in res)
        print(f"{res['model']} distillation: {line}; report in {args.out / 'report.html'}")
        return 0
    line = "  ".join(f"{k} {100 * res[k]['accuracy']:.2f}%" for k in ("fp32", "qat", "ptq8", "int") if k in res)
    if res.get("qat", {}).get("balanced_accuracy") is not None:
        line += f"  (qat balanced {100 * res['qat']['balanced_accuracy']:.2f}%)"
    if res.get("views", 1) > 1:
        line = f"{res['views']} views a map: {line}  (qat one view {100 * res['qat_1view']['accuracy']:.2f}%)"
    print(f"{res['model']}: {line}; reject at {100 * res['reject']['target_accuracy']:.0f}% target: "
          f"coverage {res['reject']['accepted']}/{res['reject']['n']} ({res['train_seconds']:.0f} s); "
          f"report in {args.out / 'report.html'}")
    if "cam" in res:
        print("\n".join(cam_lines(res["cam"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
