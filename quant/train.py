"""Quantization-aware training of the wafer-map CNN.

``python -m quant.train --out build/wmcnn_4w4a/train`` trains on synthetic maps
(quant.synth); ``--data maps.npz`` trains on a file with ``x`` (maps, object
array or [N][H][W]) and ``y`` (class indices). Maps go through the host's
``to_model_input``, the same code the production host runs, so training and
inference see identical pixels.

Writes ``checkpoint.pt`` (state dict + spec) and ``metrics.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from host_stm32mp1.preprocess import to_model_input
from quant import synth
from quant.model import GraphNet, to_input
from quant.spec import CNNSpec, spec_from_dict


def make_inputs(n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic maps preprocessed to uint8 [N][size][size][1], and labels."""
    maps, labels = synth.dataset(n, seed=seed)
    return preprocess(maps, size), labels


def preprocess(maps, size: int) -> np.ndarray:
    return np.stack([to_model_input(m, size) for m in maps])


def load_npz(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=True) as z:
        if "x" not in z.files or "y" not in z.files:
            raise SystemExit(f"{path}: expected arrays 'x' (maps) and 'y' (labels), found {z.files}")
        return preprocess(list(z["x"]), size), z["y"].astype(np.int64)


def _augment(x: torch.Tensor) -> torch.Tensor:
    # Wafer patterns have no preferred orientation: rotate by 90-degree steps and flip.
    k = int(torch.randint(0, 4, ()))
    x = torch.rot90(x, k, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if bool(torch.randint(0, 2, ())) else x


def evaluate(model: GraphNet, x_u8: np.ndarray, y: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predicted class indices."""
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x_u8), batch):
            preds.append(model(to_input(x_u8[i:i + batch])).argmax(1).numpy())
    return np.concatenate(preds)


def train(spec: CNNSpec, x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
          batch: int = 64, lr: float = 2e-3) -> GraphNet:
    torch.manual_seed(seed)
    model = GraphNet(spec)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * (len(x) // batch))
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = to_input(x), torch.as_tensor(y)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        bar = tqdm(range(len(xt) // batch), desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for step in bar:
            idx = order[step * batch:(step + 1) * batch]
            loss = loss_fn(model(_augment(xt[idx])), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model


def save_checkpoint(model: GraphNet, path: Path) -> None:
    torch.save({"spec": model.spec.to_dict(), "state_dict": model.state_dict()}, path)


def load_checkpoint(path: Path) -> GraphNet:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = GraphNet(spec_from_dict(ckpt["spec"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="QAT of the wafer-map CNN (synthetic data unless --data).")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--data", type=Path, help="NPZ with 'x' maps and 'y' labels (default: synthetic)")
    ap.add_argument("--w-bits", type=int, default=4, help="weight bits for every layer (2..8)")
    ap.add_argument("--a-bits", type=int, default=4, help="activation bits for every layer (2..8)")
    ap.add_argument("--size", type=int, default=42, choices=(42, 64), help="model input side")
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    spec = CNNSpec.uniform(args.w_bits, args.a_bits, in_size=args.size)
    if args.data:
        x, y = load_npz(args.data, args.size)
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(x))
        n_test = max(1, len(x) // 5)
        x_test, y_test, x, y = x[order[:n_test]], y[order[:n_test]], x[order[n_test:]], y[order[n_test:]]
    else:
        x, y = make_inputs(args.n_train, args.seed, args.size)
        x_test, y_test = make_inputs(args.n_test, args.seed + 1000, args.size)
    t0 = time.time()
    model = train(spec, x, y, args.epochs, args.seed)
    acc = float((evaluate(model, x_test, y_test) == y_test).mean())
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, args.out / "checkpoint.pt")
    metrics = {"model": spec.name, "test_accuracy": acc, "n_train": int(len(x)),
               "n_test": int(len(x_test)), "epochs": args.epochs, "train_seconds": time.time() - t0}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"{spec.name}: test accuracy {acc:.3f} on {len(x_test)} maps "
          f"({metrics['train_seconds']:.0f} s); checkpoint in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
