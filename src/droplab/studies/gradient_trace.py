"""The bias and noise of the dropout gradient along training, for several mask types on
the same weights and the same batch (shared by the ``gaussian`` and ``fixed-count`` studies).

For weights ``theta`` and a fixed batch, the gradient with multipliers ``u`` splits as

    g(u) = g_0 + b + n(u),   g_0 = grad with u = 1,   b = E_u g(u) - g_0,   E_u n = 0,

``b`` is dropout's regularization gradient (for linear regression ``2 Var(u) Gamma^2 w``)
and ``trace Cov_u g`` the gradient noise. From S draws ``g_1..g_S`` (flattened, (P,)):

    mean = (1/S) sum_s g_s,   var_j = sample variance of coordinate j (ddof 1),
    noise = sum_j var_j                                   (unbiased for trace Cov g),
    bias_sq = ||mean - g_0||^2 - noise / S                (unbiased for ||b||^2),

the second term removing the Monte Carlo part of ``||mean - g_0||^2`` (so ``bias_sq`` may
be slightly negative when ``b`` is small). This is :func:`droplab.theory.gradient_decomposition`
batched: the S draws are S copies of the weights in the stacked forward of
:mod:`droplab.studies.mask_mlp`, one per-copy gradient from one backward pass.

Along training: the weights are checkpoints of a net trained from its initialization
(step 0) to its early-stopping point, so the bias is measured where the clean gradient is
large (init: ``b`` small relative to ``g_0``) as well as where it is about 0 (the
optimum: ``b`` about ``-g_0``, any ratio to ``||g_0||`` then reflects that point only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from droplab.studies.mask_mlp import draw_masks, forward, losses

__all__ = ["CHECKPOINTS", "measure"]

#: steps at which the trajectory's weights are measured (those before its early stop)
CHECKPOINTS = (0, 10, 30, 100, 300, 1000, 3000)


def _grads(params: Sequence[Tensor], x: Tensor, y: Tensor, masks) -> Tensor:
    """Per-copy flattened gradients (N, P) of each copy's mean cross-entropy."""
    leaves = [p.detach().clone().requires_grad_() for p in params]
    loss = losses(forward(leaves, x, masks), y).sum()  # copies are independent: d/dcopy
    grads = torch.autograd.grad(loss, leaves)
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1).double()


def measure(
    params: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    variant: str,
    rates: Tensor,
    samples: int,
    gen: torch.Generator,
    *,
    chunk: int = 50,
) -> dict[str, Tensor]:
    """Clean gradient norm, bias and noise of ``variant`` for K stacked nets.

    Args:
        params: ``[W_1, b_1, ...]`` with leading member dim K (mask_mlp layout).
        x, y: each member's batch, (K, B, D) and (K, B).
        variant: ``"bernoulli"``, ``"gaussian"`` or ``"fixed-count"``.
        rates: (K,) P(drop) of each member.
        samples: S >= 2 mask draws per member.
        gen: source of the masks.

    Returns:
        (K,) float64 tensors: ``clean_sq`` ``||g_0||^2``, ``bias_sq`` (unbiased
        ``||b||^2``), ``raw_sq`` ``||mean - g_0||^2``, ``noise`` ``trace Cov g``.
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples!r}")
    k, b = y.shape
    widths = [params[2 * i].shape[1] for i in range(len(params) // 2 - 1)]
    clean = _grads(params, x, y, None)  # (K, P)
    total = torch.zeros_like(clean)
    total_sq = torch.zeros_like(clean)
    done = 0
    while done < samples:
        c = min(chunk, samples - done)
        rep = [p.repeat_interleave(c, 0) for p in params]  # (K c, ...)
        masks = draw_masks(variant, rates.repeat_interleave(c), widths, k * c, b, gen)
        g = _grads(rep, x.repeat_interleave(c, 0), y.repeat_interleave(c, 0), masks)
        g = g.reshape(k, c, -1)  # (K, c, P)
        total += g.sum(1)
        total_sq += g.pow(2).sum(1)
        done += c
    mean = total / samples
    var = ((total_sq - samples * mean.pow(2)) / (samples - 1)).clamp_min(0.0)
    noise = var.sum(1)
    raw = (mean - clean).pow(2).sum(1)
    return {
        "clean_sq": clean.pow(2).sum(1),
        "bias_sq": raw - noise / samples,
        "raw_sq": raw,
        "noise": noise,
    }
