"""Sharpness-aware steps (``--sam``) for ``quant.fit``."""
import torch


def sam_step(model: torch.nn.Module, opt, loss_of, rho: float) -> None:
    """Turn the gradients in ``opt``'s parameters into sharpness-aware ones
    (Foret et al., ICLR 2021): step the weights ``rho`` along the normalized
    gradient, take the gradient of ``loss_of()`` there, and step back. The
    caller's ``opt.step()`` then applies that gradient at the original weights.

    Why: a few percent of the real maps' labels are ones every net trained on
    the rest rejects (docs/REAL_MAPS.md, Disputed labels); the FP32 stage fits
    them to a loss near zero, and a minimum that stays low over a
    neighbourhood is the one that memorizes single maps least. Measured at
    rho 0.05 on the real-map recipe it is not better (same paragraph), so it
    is an option.
    Batch-norm running statistics are left as the first pass set them: the
    perturbed pass is not data."""
    params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not params:
        return
    # The weights are restored from copies: (w + e) - e is not w in float32.
    kept_w = [p.detach().clone() for p in params]
    with torch.no_grad():
        norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
        scale = rho / (norm + 1e-12)
        for p in params:
            p.add_(p.grad * scale)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    kept = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
            for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        opt.zero_grad()
        loss_of().backward()
    finally:
        for m, (momentum, count) in zip(norms, kept):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)
        with torch.no_grad():
            for p, w in zip(params, kept_w):
                p.copy_(w)
