"""Training-time symmetries of the model input (float NCHW ``q / 256``).

``fit`` draws one of these for every batch; ``check`` refuses an unknown
mode before training starts, not at the first batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


AUGMENTS = ("dihedral", "dihedral-each", "rotate", "hflip", "none")


def augment(x: torch.Tensor, mode: str) -> torch.Tensor:
    """One random symmetry for the whole batch (``dihedral-each``: one a map).

    ``dihedral``: wafer maps have no preferred orientation, so any of the
    eight turns and flips (turns on square inputs only). ``hflip``: a
    buffer-zone image has a fixed radial axis (mold at the top, wafer edge
    at the bottom); only the mirror along the circumference is a real view.
    ``rotate``: dihedral, then half the maps turned further by an angle
    within 45 degrees (``rotate``). ``none``: as given."""
    square = x.shape[2] == x.shape[3]
    if mode == "none":
        return x
    if mode == "dihedral-each" and square:
        return dihedral_each(x)
    if mode in ("dihedral", "rotate") and square:
        x = torch.rot90(x, int(torch.randint(0, 4, ())), dims=(2, 3))
    if bool(torch.randint(0, 2, ())):
        x = torch.flip(x, dims=(3,))
    if mode == "rotate" and square:
        x = rotate(x)
    return x


def rotate(x: torch.Tensor, share: float = 0.5, max_deg: float = 45.0) -> torch.Tensor:
    """Turn a random ``share`` of the maps about the centre by an angle
    within +-``max_deg``; with the dihedral turns that reaches every angle.
    A wafer's notch can point anywhere, and no class depends on it.
    Nearest-neighbour sampling keeps the die codes (0, 128, 255) as they
    are; what turns in from outside the canvas is 0, no die."""
    n = len(x)
    angle = (torch.rand(n) * 2 - 1) * (max_deg * torch.pi / 180)
    angle = torch.where(torch.rand(n) < share, angle, torch.zeros(n))
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False).to(x.device, x.dtype)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def dihedral_each(x: torch.Tensor) -> torch.Tensor:
    """One random turn and flip per map, so that a batch mixes all eight
    views; with one view a batch, the batch norms' statistics (and each
    step's gradient) come from a single orientation."""
    turn = torch.randint(0, 4, (len(x),))
    flip = torch.randint(0, 2, (len(x),)).bool()
    out = torch.empty_like(x)
    for k in range(4):
        sel = turn == k
        if sel.any():
            out[sel] = torch.rot90(x[sel], k, dims=(2, 3))
    out[flip] = torch.flip(out[flip], dims=(3,))
    return out


def check(mode: str) -> str:
    # Checked before training starts, not at the first batch.
    if mode not in AUGMENTS:
        raise ValueError(f"unknown augmentation {mode!r}; choose from {', '.join(AUGMENTS)}")
    return mode
