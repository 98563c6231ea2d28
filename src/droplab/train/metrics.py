"""Metrics over predictions, batched over any leading (member) dims.

Each takes predictions of shape ``(..., n, C)`` (class probabilities; accuracy also takes
logits) or ``(..., n)`` (regression), targets ``(n,)``, and returns a ``float`` when there
are no leading dims, else a tensor of the leading shape (e.g. ``(K,)``, one per member).
"""

from __future__ import annotations

import torch

__all__ = ["accuracy", "ece", "nll", "rmse"]


def _out(t: torch.Tensor) -> float | torch.Tensor:
    return float(t) if t.dim() == 0 else t


def _check(pred: torch.Tensor, y: torch.Tensor, dims: int) -> None:
    if pred.dim() < dims or pred.shape[pred.dim() - dims] != y.shape[-1] or y.dim() != 1:
        raise ValueError(
            f"predictions {tuple(pred.shape)} and targets {tuple(y.shape)} do not match: "
            f"expected (..., n{', C' if dims == 2 else ''}) and (n,)"
        )


def accuracy(probs: torch.Tensor, y: torch.Tensor) -> float | torch.Tensor:
    """Fraction of rows whose argmax is the label: ``mean(argmax_c p[i, c] == y[i])``."""
    _check(probs, y, 2)
    return _out((probs.argmax(-1) == y).float().mean(-1))


def nll(probs: torch.Tensor, y: torch.Tensor, *, eps: float = 1e-12) -> float | torch.Tensor:
    """Mean negative log-likelihood ``-mean_i log p[i, y_i]`` (probabilities clamped at eps)."""
    _check(probs, y, 2)
    idx = y.expand(*probs.shape[:-1]).unsqueeze(-1)  # (..., n, 1)
    p = probs.gather(-1, idx).squeeze(-1)  # (..., n)
    return _out(-p.clamp_min(eps).log().mean(-1))


def ece(probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float | torch.Tensor:
    """Expected calibration error with ``bins`` equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_b (n_b / n) * |acc_b - conf_b|``, where bin ``b`` holds the rows whose
    confidence ``max_c p[i, c]`` lies in ``((b-1)/bins, b/bins]``.
    """
    _check(probs, y, 2)
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    conf, pred = probs.max(-1)  # (..., n)
    correct = (pred == y).to(probs.dtype)
    b = (conf * bins).ceil().long().clamp(1, bins) - 1  # (..., n) in [0, bins)
    lead = conf.shape[:-1]
    shape = (*lead, bins)
    sum_conf = torch.zeros(shape, dtype=probs.dtype, device=probs.device).scatter_add_(-1, b, conf)
    sum_acc = torch.zeros(shape, dtype=probs.dtype, device=probs.device).scatter_add_(
        -1, b, correct
    )
    n = conf.shape[-1]
    return _out((sum_acc - sum_conf).abs().sum(-1) / n)


def rmse(pred: torch.Tensor, y: torch.Tensor) -> float | torch.Tensor:
    """Root mean squared error ``sqrt(mean_i (pred_i - y_i)^2)``; pred ``(..., n)`` or ``(..., n, 1)``."""
    if pred.dim() >= 2 and pred.shape[-1] == 1 and pred.shape[-2] == y.shape[-1]:
        pred = pred.squeeze(-1)
    _check(pred, y, 1)
    return _out((pred - y).pow(2).mean(-1).sqrt())
