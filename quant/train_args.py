"""quant.train's command line: the options, JSON config files (keyed by the
options' argparse names; flags on the command line override them) and the
defaults that depend on the family. ``bench.accuracy_vs_bits`` reads the
same configs through ``load_config``."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from contract.spec import WAFER_CLASSES
from contract.zoo import FAMILIES
from quant.augment import AUGMENTS
from quant.fit import BALANCES, OPTIMIZERS
from quant.gridscale import SCALE as GRID_SCALE
from quant.traindata import VAL_FOLDS
from quant.floatnet import INITS
from quant.model import ACT_INITS


def bits_arg(text):
    """'4' -> 4, '8,4,4,4' -> (8, 4, 4, 4); ints and lists (from a config) pass through."""
    if isinstance(text, int):
        return text
    if isinstance(text, (list, tuple)):
        return tuple(int(v) for v in text)
    parts = [int(v) for v in str(text).split(",") if v.strip()]
    return parts[0] if len(parts) == 1 else tuple(parts)


def _int_list(text):
    if isinstance(text, (list, tuple)):
        return tuple(int(v) for v in text)
    return tuple(int(v) for v in str(text).split(",") if v.strip())


def _float_pair(text):
    vals = tuple(float(v) for v in (text if isinstance(text, (list, tuple)) else str(text).split(",")))
    if len(vals) != 2 or not 0 < vals[0] < vals[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO,HI with 0 < LO < HI")
    return vals


CONFIG_PATHS = ("data", "distill_from")


def config_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in ("out", "config")}


def load_config(path: Path, parser: argparse.ArgumentParser) -> dict:
    """A JSON config's options, keyed by argparse dest (dashes become underscores)."""
    cfg = json.loads(Path(path).read_text())
    dests = {a.dest for a in parser._actions}
    out = {}
    for key, value in cfg.items():
        if key.startswith("_") or key in ("comment", "description"):
            continue
        dest = key.replace("-", "_")
        if dest not in dests or dest in ("out", "config", "help"):
            raise SystemExit(f"{path}: unknown option {key!r}")
        out[dest] = Path(value) if dest in CONFIG_PATHS and value is not None else value
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="FP32 pre-training, then QAT, of a model family.")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--config", type=Path, help="JSON file of options (quant/configs/); flags override it")
    ap.add_argument("--family", default="wmcnn", choices=("wmcnn", *FAMILIES))
    ap.add_argument("--data", type=Path, help="LSWMD.pkl or an NPZ with 'x' maps and 'y' labels "
                    "(--multilabel: a MixedWM38 npz; default: synthetic)")
    ap.add_argument("--w-bits", type=bits_arg, default=4,
                    help="weight bits: one for every layer, or a comma list per weighted layer (2..8)")
    ap.add_argument("--a-bits", type=bits_arg, default=4,
                    help="activation bits: one for every layer, or a comma list per requantizing layer")
    ap.add_argument("--size", type=int, default=None, help="model input side (42 or 64 for wafer maps)")
    ap.add_argument("--width", type=int, default=None,
                    help="channels of the first stage (zoo default 16, xception_fpn 8, wmcnn 8)")
    ap.add_argument("--channels", type=_int_list, default=None,
                    help="wmcnn: output channels of each conv+pool block, e.g. 16,32,64,64 (overrides --width)")
    ap.add_argument("--block-convs", type=_int_list, default=None,
                    help="wmcnn: conv3x3 layers in each block, e.g. 1,1,2,2 (default one each); "
                         "--w-bits and --a-bits lists then have an entry per conv")
    ap.add_argument("--name", default=None,
                    help="wmcnn: the model's name before its bit tag (default wmcnn), so that two "
                         "recipes at one width tell apart in metrics.json and model.json "
                         "(wmcnn_wide -> wmcnn_wide_2w2a)")
    ap.add_argument("--die-channels", action="store_true",
                    help="wmcnn: a fixed first layer decodes the gray codes into die and fail channels "
                         "(contract.spec.die_decode); on real maps worth about two points")
    ap.add_argument("--eight-classes", action="store_true", help="drop 'none', as the paper does")
    ap.add_argument("--limit", type=int, default=None, help="at most this many labelled maps of a real file")
    ap.add_argument("--synth-maps", type=int, default=0,
                    help="with --data: add this many maps of the real-calibrated generator (quant.synth, "
                         "profile wm811k) to the training rows; validation and test stay real")
    ap.add_argument("--pretrain-maps", type=int, default=0, metavar="N",
                    help="with --data: the FP32 stage first trains on N maps of the real-calibrated "
                         "generator (--pretrain-epochs, own schedule), then on the real rows")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--grid-variants", type=int, default=0, metavar="N",
                    help="with a real .pkl: each training map also re-gridded to N other die counts "
                         "(quant.gridscale, factors in --grid-scale); each draw takes one variant at random")
    ap.add_argument("--grid-scale", type=_float_pair, default=GRID_SCALE, metavar="LO,HI",
                    help="range of --grid-variants' die-count factors (log-uniform)")
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--fp-epochs", type=int, default=6)
    ap.add_argument("--qat-epochs", "--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the FP32 stage")
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                    help="the FP32 stage's optimizer (pretraining included): adam, or sgd with Nesterov "
                         "momentum (give --qat-lr with it: QAT always runs Adam)")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="the FP32 stage's L2 weight decay")
    ap.add_argument("--sam", type=float, default=0.0, metavar="RHO",
                    help="sharpness-aware steps of this radius in the FP32 stage's real-map epochs (0: off)")
    ap.add_argument("--qat-lr", type=float, default=None, help="peak QAT learning rate (default lr / 2)")
    ap.add_argument("--loss", default="ce", choices=("ce", "focal"))
    ap.add_argument("--gamma", type=float, default=2.0, help="focal-loss gamma")
    ap.add_argument("--balanced", action="store_const", const="equal", default="none",
                    help="class-balanced sampling (the same as --balance equal)")
    ap.add_argument("--balance", dest="balanced", choices=BALANCES,
                    help="class balance of the sampling: none, sqrt (a class drawn as the square "
                         "root of its size) or equal")
    ap.add_argument("--augment", choices=AUGMENTS, default=None,
                    help="random symmetries while training: dihedral (turns and flips, one for the whole "
                         "batch; the wafer-map default), dihedral-each (one for each map), rotate "
                         "(dihedral, then half the maps turned by up to 45 degrees more), hflip (mirror "
                         "along the circumference only, the buffer-zone default), none")
    ap.add_argument("--bn", action="store_true",
                    help="FP32 stage with batch norms, folded into the weights before QAT")
    ap.add_argument("--init", choices=INITS, default="he",
                    help="FP32 weight init: he (fan-in, ReLU gain) or torch (its layer default; with --bn "
                         "it generalizes better on real maps)")
    ap.add_argument("--equalize", action="store_true",
                    help="cross-layer equalization of the float net before QAT (depthwise nets at low bits)")
    ap.add_argument("--act-init", choices=ACT_INITS, default="stats",
                    help="how QAT's activation scales start: stats (a high percentile) or mse "
                         "(least quantization error; better at 2 bits)")
    ap.add_argument("--average-last", type=int, default=0, metavar="K",
                    help="end QAT with its weights averaged over its last K epochs (steadier at 2 bits)")
    ap.add_argument("--swa-epochs", type=int, default=0, metavar="N",
                    help="end the FP32 stage with N epochs at the constant rate --swa-lr and the mean "
                         "of their weights (stochastic weight averaging; batch norms recomputed)")
    ap.add_argument("--swa-lr", type=float, default=0.02, help="the constant rate of --swa-epochs")
    ap.add_argument("--ptq", action="store_true", help="also report an 8-bit post-training-quantized twin")
    ap.add_argument("--views", type=int, choices=(1, 8), default=1,
                    help="evaluate (and have the host classify) each wafer map as the summed logits of "
                         "its 8 turns and flips (contract.views); 8 accelerator runs a map")
    ap.add_argument("--target-accuracy", type=float, default=0.99,
                    help="accuracy the reject threshold aims for on accepted maps")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads; these nets are small, and on a busy 2-core box one thread "
                         "used 0.09 CPU-s a step against 0.57 for two (spinning), and finished 3x sooner")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=None,
                    help="seed of the rows held out for test (a file without Test rows) and of the "
                         "validation part (default: --seed); fix it to compare training seeds on the "
                         "same maps")
    ap.add_argument("--val-fold", type=int, default=0, choices=range(VAL_FOLDS), metavar="K",
                    help="validate on the K-th tenth (0 to 9) of each class's training rows instead of "
                         "the first; the ten folds of one --split-seed cover every training row once, "
                         "with the held-out rows unchanged")
    ap.add_argument("--fit-fraction", type=float, default=1.0, metavar="F",
                    help="fit on a stratified fraction F of the training rows outside validation "
                         "(a learning curve; validation and held-out rows unchanged)")
    ap.add_argument("--resume", action="store_true", help="continue from the per-epoch states in --out")
    ap.add_argument("--no-cam", action="store_true", help="xception_fpn: skip the CAM size evaluation")
    ap.add_argument("--distill-from", type=Path, default=None,
                    help="teacher checkpoint (fp32.pt or checkpoint.pt): train the student on the "
                         "maps without their labels")
    ap.add_argument("--temperature", type=float, default=4.0, help="distillation temperature")
    ap.add_argument("--no-compare", action="store_true",
                    help="distillation: skip training the same student with labels")
    ap.add_argument("--multilabel", action="store_true",
                    help="multi-label head (sigmoid/BCE) on mixed patterns (synthetic or --data MixedWM38.npz)")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    ap = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.config is not None:
        ap.set_defaults(**load_config(known.config, ap))
    args = ap.parse_args(argv)
    args.w_bits, args.a_bits = bits_arg(args.w_bits), bits_arg(args.a_bits)
    args.size = args.size or (64 if args.family == "xception_fpn" else 42)
    args.augment = args.augment or ("hflip" if args.family == "xception_fpn" else "dihedral")
    args.classes = WAFER_CLASSES
    check(args)
    return args


def check(args) -> None:
    """Refuse options that parse but cannot train as asked."""
    if args.name is not None:
        if args.family != "wmcnn":
            raise SystemExit(f"--name is for wmcnn; {args.family} models are named by their family")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", args.name):
            raise SystemExit(f"--name {args.name!r}: lower-case letters, digits and _ only, "
                             "starting with a letter (it names files and reports)")
    if args.grid_variants:
        if args.data is None or args.data.suffix != ".pkl":
            raise SystemExit("--grid-variants re-grids a real LSWMD .pkl file's maps; give --data FILE.pkl")
        if args.synth_maps:
            raise SystemExit("--grid-variants and --synth-maps: re-gridding is for the real rows; give one")
    if args.swa_epochs < 0 or args.swa_lr <= 0:
        raise SystemExit(f"--swa-epochs {args.swa_epochs} --swa-lr {args.swa_lr}: give N >= 0 and a rate > 0")
    if not 0 < args.fit_fraction <= 1:
        raise SystemExit(f"--fit-fraction {args.fit_fraction}: give a fraction in (0, 1]")
    if args.optimizer != "adam" and args.qat_lr is None:
        # QAT runs Adam at --qat-lr, by default half of --lr: an SGD rate is far too large for Adam.
        raise SystemExit(f"--optimizer {args.optimizer} needs --qat-lr (QAT always runs Adam)")
