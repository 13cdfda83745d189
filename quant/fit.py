"""Training loops: FP32 pre-training, QAT fine-tuning, PTQ, distillation.

Inputs are uint8 images [N][H][W][C] (HWC, as the host sends them); they
become the float NCHW ``q / 256`` tensors here. Every loop is seeded:
the same seed and data give the same weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from contract import views
from quant.floatnet import FloatNet
from quant.model import GraphNet, to_input
from quant import augment as aug
from quant.averaging import TailAverage
from quant.sam import sam_step


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Cross-entropy scaled by (1 - p_true)**gamma: easy examples count less."""
    logp = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    return (-(1 - logp.exp()) ** gamma * logp).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-label: one sigmoid per label (threshold 0 logit = probability 0.5)."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def _loss_fn(name: str, gamma: float = 2.0):
    if name == "focal":
        return lambda lg, t: focal_loss(lg, t, gamma)
    if name == "ce":
        return F.cross_entropy
    if name == "bce":
        return bce_loss
    raise ValueError(f"unknown loss {name!r}: use ce, focal or bce")


BALANCES = ("none", "sqrt", "equal")


def _order(y: np.ndarray, balanced, gen: torch.Generator) -> torch.Tensor:
    """One epoch of sample indices. ``balanced`` (True or "equal"): every class
    is drawn equally often; "sqrt": a class's share grows as the square root of
    its size, a middle way that lifts the rare classes without repeating a
    56-map class twenty times an epoch (real WM-811K: best validation
    accuracy of the three). False or "none": each map once. Multi-label rows
    are always drawn uniformly."""
    mode = {True: "equal", False: "none", None: "none"}.get(balanced, balanced)
    if mode not in BALANCES:
        raise ValueError(f"unknown class balance {balanced!r}; choose from {', '.join(BALANCES)}")
    if mode == "none" or np.ndim(y) != 1:
        return torch.randperm(len(y), generator=gen)
    counts = np.bincount(y).astype(np.float64)
    per_map = 1.0 / (counts[y] if mode == "equal" else np.sqrt(counts[y]))
    return torch.multinomial(torch.as_tensor(per_map), len(y), replacement=True, generator=gen)


def _trainable(model: torch.nn.Module) -> list:
    # Fixed layers (a spec's die decoder) stay as the spec set them.
    return model.trainable_parameters() if hasattr(model, "trainable_parameters") else list(model.parameters())


def _save_state(path, stage: str, epoch: int, model, opt, sched, gen, tail=None) -> None:
    tmp = Path(str(path) + ".tmp")
    torch.save({"stage": stage, "epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "tail": tail}, tmp)
    tmp.replace(path)


OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("onecycle", "constant")


def plain(x):
    """The maps as given: variant 0 of a [N][V][S][S][C] variants array."""
    return x[:, 0] if getattr(x, "ndim", 4) == 5 else x


def make_optimizer(name: str, params: list, lr: float, weight_decay: float = 0.0):
    """``adam``, or ``sgd`` (Nesterov momentum 0.9). ``weight_decay`` is the
    plain L2 term of either, on every trainable tensor."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
        batch: int = 64, lr: float = 2e-3, loss: str = "ce", balanced=False,
        augment: str = "dihedral", desc: str = "train", gamma: float = 2.0, state_path=None,
        resume: bool = False, average_last: int = 0, optimizer: str = "adam",
        weight_decay: float = 0.0, sam: float = 0.0, schedule: str = "onecycle") -> torch.nn.Module:
    """Supervised training of a FloatNet or GraphNet in place.

    With ``state_path`` the model, optimizer, schedule and random states are
    saved after every epoch; ``resume`` continues from that file (the run then
    ends with the same weights as an uninterrupted one). With ``average_last``
    K, the model ends with the mean of its weights after each of the last K
    epochs (``TailAverage``). An ``x`` of shape [N][V][S][S][C] holds V
    variants of each map (``quant.gridscale``); each draw of a map takes one
    of them at random. ``sam`` > 0 makes each step sharpness-aware
    (``sam_step``) with that radius. ``schedule``: ``onecycle`` (warm up to
    ``lr``, anneal to nearly 0) or ``constant`` (``lr`` throughout, for
    weight averaging)."""
    if epochs <= 0:
        return model.eval()
    if sam < 0:
        raise ValueError(f"the SAM radius must be >= 0, got {sam}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    torch.manual_seed(seed)
    steps = max(1, len(x) // batch)
    # A GPU trains when there is one; the model comes back on the CPU, where
    # export, calibration and the integer twin run.
    dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model.to(dev)
    opt = make_optimizer(optimizer, _trainable(model), lr, weight_decay)
    if schedule == "constant":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    else:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    loss_fn = _loss_fn(loss, gamma)
    # Batches are converted as drawn: x may be a memory-mapped uint8 cache
    # (quant.datasets.stream) far larger than a float copy could be.
    yt = torch.as_tensor(np.asarray(y))
    mode = aug.check(augment)
    regridded = getattr(x, "ndim", 4) == 5
    gen = torch.Generator().manual_seed(seed)
    start = 0
    tail = TailAverage(epochs, average_last)
    if resume and state_path is not None and Path(state_path).exists():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        if st["stage"] == desc:
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["opt"])
            sched.load_state_dict(st["sched"])
            gen.set_state(st["gen"])
            torch.set_rng_state(st["torch_rng"])
            tail.load(st.get("tail"))
            start = st["epoch"]
            print(f"{desc}: resuming after epoch {start}/{epochs} from {state_path}")
    for epoch in range(start, epochs):
        model.train()
        order = _order(np.asarray(y), balanced, gen)
        bar = tqdm(range(steps), desc=f"{desc} {epoch + 1}/{epochs}", leave=False, mininterval=1.0)
        for step in bar:
            idx = order[step * batch:(step + 1) * batch]
            if regridded:   # one of each map's grid-size variants (quant.gridscale)
                pick = torch.randint(0, x.shape[1], (len(idx),), generator=gen).numpy()
                rows = np.asarray(x[idx.numpy(), pick])
            else:
                rows = np.asarray(x[idx.numpy()])
            xb = aug.augment(to_input(rows), mode).to(dev)
            yb = yt[idx].to(dev)
            out = loss_fn(model(xb), yb)
            opt.zero_grad()
            out.backward()
            if sam:
                sam_step(model, opt, lambda: loss_fn(model(xb), yb), sam)
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{out.item():.3f}")
        tail.add(epoch, model)
        if state_path is not None:
            _save_state(state_path, desc, epoch + 1, model, opt, sched, gen, tail.state())
    tail.apply(model)
    return model.cpu().eval()


@torch.no_grad()
def calibrate(model: GraphNet, x: np.ndarray, batch: int = 128, passes: int = 2) -> GraphNet:
    """Let the activation quantizers collect their ranges (train mode, no
    gradient), then fix the averages as the starting values of the learned scales.

    Brevitas's runtime-stats scales keep collecting for their first 300
    training steps (``collect_stats_steps``) and only then become parameters;
    left at that, QAT would run its first epochs on per-batch scales, which a
    deep net at 4 bits does not recover from (xception_fpn: QAT loss 1.2
    against 0.25 after three epochs)."""
    from brevitas.graph.calibrate import finalize_collect_stats, set_collect_stats_to_average

    model.apply(set_collect_stats_to_average)
    model.train()
    xt = to_input(x)
    for _ in range(passes):
        for i in range(0, len(xt), batch):
            model(xt[i:i + batch])
    model.apply(finalize_collect_stats)
    return model.eval()


def from_float(spec, fp: FloatNet, x_calib: np.ndarray, act_init: str = "stats") -> GraphNet:
    """A GraphNet carrying ``fp``'s weights, with calibrated activation ranges
    (started as ``act_init`` says, see ``quant.model.ACT_INITS``)."""
    q = GraphNet(spec, act_init=act_init)
    missing = q.load_state_dict(fp.state_dict(), strict=False)
    if missing.unexpected_keys:
        raise ValueError(f"float and quantized nets differ: {missing.unexpected_keys}")
    return calibrate(q, x_calib)


@torch.no_grad()
def update_bn(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, seed: int, batch: int = 64,
              balanced="none", augment: str = "dihedral") -> torch.nn.Module:
    """Batch-norm statistics recomputed for the model's present weights: the
    plain mean over one epoch drawn as training draws it (class balance and
    symmetries). Averaged weights need it: the running statistics belong to
    the nets that were averaged, not to their mean."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                   # a cumulative mean over the pass
    mode = aug.check(augment)
    gen = torch.Generator().manual_seed(seed)
    order = _order(np.asarray(y), balanced, gen)
    model.train()
    for i in range(0, len(order), batch):
        idx = order[i:i + batch].numpy()
        model(aug.augment(to_input(np.asarray(plain(x)[idx])), mode))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return model.eval()


def float_twin(spec, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, bn: bool = False,
               equalize: bool = False, desc: str = "fp32", init: str = "he", pretrain=None,
               swa_epochs: int = 0, swa_lr: float = 0.02, **kw) -> FloatNet:
    """The FP32 net QAT starts from: trained (with batch norms if ``bn``, then
    folded into the weights), and cross-layer equalized if ``equalize``.
    ``init`` is ``FloatNet``'s weight initialization. ``pretrain``, a tuple
    (maps, labels, epochs), trains on those maps first, with their own
    schedule and no class balance (generated maps come balanced).
    ``swa_epochs`` N > 0: after its schedule the net trains N more epochs at
    the constant rate ``swa_lr`` and ends as the mean of the weights after
    each of them (stochastic weight averaging), batch norms recomputed."""
    torch.manual_seed(seed)
    net = FloatNet(spec, bn=bn, init=init)
    path = kw.get("state_path")
    if pretrain is not None:
        xp, yp, pe = pretrain
        pkw = {**kw, "balanced": "none", "sam": 0.0,
               "state_path": None if path is None else Path(path).with_name("pretrain.state.pt")}
        net = fit(net, xp, yp, pe, seed, desc="pretrain", **pkw)
    fp = fit(net, x, y, epochs, seed, desc=desc, **kw)
    if swa_epochs:
        skw = {**kw, "lr": swa_lr, "schedule": "constant",
               "state_path": None if path is None else Path(path).with_name("swa.state.pt")}
        fp = fit(fp, x, y, swa_epochs, seed + 2, desc="swa", average_last=swa_epochs, **skw)
        fp = update_bn(fp, x, y, seed + 3, batch=kw.get("batch", 64), balanced=kw.get("balanced", "none"),
                       augment=kw.get("augment", "dihedral"))
    if bn:
        fp = fp.folded()
    if equalize:
        from quant.equalize import equalize as cle

        fp = cle(fp)
    return fp


def train_qat(spec, x: np.ndarray, y: np.ndarray, fp_epochs: int, qat_epochs: int, seed: int,
              state_dir=None, resume: bool = False, qat_lr: float | None = None, bn: bool = False,
              equalize: bool = False, act_init: str = "stats", init: str = "he",
              average_last: int = 0, pretrain=None, swa_epochs: int = 0, swa_lr: float = 0.02,
              **kw) -> tuple[FloatNet, GraphNet]:
    """FP32 pre-training, then QAT fine-tuning from its weights (lr / 2 unless
    ``qat_lr``). With ``bn`` the FP32 stage trains with batch norms, which are
    folded into the weights before QAT (the returned float twin is the folded
    one). With ``equalize`` the float net is cross-layer equalized
    (``quant.equalize``) before QAT; the returned twin is the equalized one,
    the same function. With ``state_dir``, per-epoch states ``fp32.state.pt`` and
    ``qat.state.pt`` go there, and ``resume`` continues from them. QAT ends
    with its weights averaged over its last ``average_last`` epochs.
    ``pretrain``, ``swa_epochs`` and ``swa_lr`` are ``float_twin``'s."""
    paths = {k: None if state_dir is None else Path(state_dir) / f"{k}.state.pt" for k in ("fp32", "qat")}
    fp = float_twin(spec, x, y, fp_epochs, seed, bn=bn, equalize=equalize, state_path=paths["fp32"],
                    resume=resume, init=init, pretrain=pretrain, swa_epochs=swa_epochs, swa_lr=swa_lr, **kw)
    q = qat_from(spec, fp, x, y, qat_epochs, seed, state_path=paths["qat"], resume=resume,
                 qat_lr=qat_lr, act_init=act_init, average_last=average_last, **kw)
    return fp, q


def qat_from(spec, fp: FloatNet, x: np.ndarray, y: np.ndarray, qat_epochs: int, seed: int,
             qat_lr: float | None = None, act_init: str = "stats", average_last: int = 0,
             **kw) -> GraphNet:
    """QAT fine-tuning of ``spec`` starting from the float net ``fp`` (which is
    not changed), ending with the mean of its last ``average_last`` epochs' weights.
    QAT always runs Adam without weight decay or SAM: ``optimizer``,
    ``weight_decay`` and ``sam`` in ``kw`` are the FP32 stage's."""
    torch.manual_seed(seed + 1)
    q = from_float(spec, fp, plain(x)[:512], act_init=act_init)
    lr = qat_lr if qat_lr is not None else kw.get("lr", 2e-3) / 2
    kw = {k: v for k, v in kw.items() if k not in ("lr", "optimizer", "weight_decay", "sam")}
    return fit(q, x, y, qat_epochs, seed + 1, lr=lr, desc="qat", average_last=average_last, **kw)


def distill(teacher: torch.nn.Module, student: torch.nn.Module, x_unlabeled: np.ndarray,
            epochs: int, seed: int, batch: int = 64, lr: float = 2e-3, temperature: float = 4.0,
            y=None, augment: str = "dihedral"):
    """Train ``student`` to match ``teacher``'s softened outputs; no labels used
    (``y`` is accepted for call-compatibility with ``fit`` and must be None)."""
    if y is not None:
        raise ValueError("distill learns from the teacher only: pass y=None")
    if epochs <= 0:
        return student.eval()
    torch.manual_seed(seed)
    teacher.eval()
    steps = max(1, len(x_unlabeled) // batch)
    opt = torch.optim.Adam(_trainable(student), lr=lr)
    xt = to_input(x_unlabeled)
    mode = aug.check(augment)
    gen = torch.Generator().manual_seed(seed)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    for epoch in range(epochs):
        student.train()
        order = torch.randperm(len(xt), generator=gen)
        for step in tqdm(range(steps), desc=f"distill {epoch + 1}/{epochs}", leave=False, mininterval=1.0):
            xb = aug.augment(xt[order[step * batch:(step + 1) * batch]], mode)
            with torch.no_grad():
                soft = F.softmax(teacher(xb) / temperature, dim=1)
            logp = F.log_softmax(student(xb) / temperature, dim=1)
            out = F.kl_div(logp, soft, reduction="batchmean") * temperature ** 2
            opt.zero_grad()
            out.backward()
            opt.step()
            sched.step()
    return student.eval()


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: np.ndarray, batch: int = 256, n_views: int = 1) -> np.ndarray:
    """Logits [N][K]; with ``n_views`` 8, the mean over each map's eight turns
    and flips (``contract.views``, the host's rule: it sums the board's integer
    logits, then scales by 1/8)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        z = model(to_input(views.expand(x[i:i + batch], n_views))).numpy()
        out.append(z.reshape(-1, n_views, z.shape[1]).mean(1))
    return np.concatenate(out)
