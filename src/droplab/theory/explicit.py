"""Explicit dropout: replace dropout on the last hidden layer by its marginalized penalty.

Follows Wei, Kakade & Ma (2020), "The implicit and explicit regularization effects of
dropout" (ICML): averaging the loss over the dropout mask of the last hidden layer yields
an explicit regularizer, which can be trained directly instead of sampling masks.

Setup: last hidden activations ``h`` (H,), output layer ``z = W h + b`` with ``W`` (O, H).
Inverted dropout on ``h`` gives ``z~ = W (m * h / keep) + b`` with ``m_j ~ Bernoulli(keep)``
i.i.d., so ``delta = z~ - z = W ((m/keep - 1) * h)`` has mean 0 and covariance

    Cov(delta) = (1-keep)/keep * W diag(h^2) W^T = (1-keep)/keep * sum_j h_j^2 W_:j W_:j^T.

Squared loss ``||y - z~||^2`` (exact): ``E ||y - z - delta||^2 = ||y - z||^2 + E ||delta||^2``
because the cross term has mean zero, and ``E ||delta||^2 = trace Cov(delta)``:

    E ||y - z~||^2 = ||y - z||^2 + (1-keep)/keep * sum_j h_j^2 ||W_:j||^2.

Cross-entropy ``l(z) = -log softmax(z)_y`` (second order): Taylor-expanding around ``z``,
``E l(z + delta) ~ l(z) + grad l . E delta + 1/2 E delta^T H delta`` with the softmax
Hessian ``H = diag(p) - p p^T`` (``p = softmax(z)``, independent of y); ``E delta = 0``
and ``E delta^T H delta = trace(H Cov(delta))``, so

    E l(z~) ~ l(z) + (1-keep)/(2 keep) * sum_j h_j^2 W_:j^T H W_:j,
    W_:j^T H W_:j = sum_o p_o W_oj^2 - (sum_o p_o W_oj)^2   (the variance of W_:j under p).

``W_:j^T H W_:j`` is the j-th diagonal entry of the Hessian of the loss with respect to
``h``; only the diagonal enters because the mask is independent across units.

Gaussian dropout with ``sigma^2 = (1-keep)/keep`` has the same covariance, so the same
penalty (give ``keep = droplab.theory.bernoulli_keep(sigma)``).
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from droplab.theory._noise import check_choice

__all__ = ["ExplicitDropoutPenalty"]

LOSSES = ("cross_entropy", "squared")


def _coefficient(keep: float | Tensor, lead: tuple[int, ...], like: Tensor) -> Tensor:
    """``(1-keep)/keep`` broadcastable to the per-example penalty of shape (*lead, B)."""
    if isinstance(keep, bool) or not isinstance(keep, (numbers.Real, Tensor)):
        raise TypeError(f"keep must be a float or a tensor, got {type(keep).__name__} {keep!r}")
    k = torch.as_tensor(keep, dtype=like.dtype, device=like.device)
    if not bool(((k > 0) & (k <= 1)).all()):
        raise ValueError(
            f"keep (the probability of KEEPING a hidden unit) must be in (0, 1], got {keep}"
        )
    if k.dim() > 0 and tuple(k.shape) != lead:
        raise ValueError(
            f"keep must be a scalar or have the leading (member) shape {lead} of hidden, "
            f"got shape {tuple(k.shape)}"
        )
    return ((1 - k) / k).unsqueeze(-1) if k.dim() > 0 else (1 - k) / k  # (*lead, 1) or ()


class ExplicitDropoutPenalty(nn.Module):
    r"""The marginalized (explicit) regularizer of dropout on the last hidden layer.

    Add it to the clean loss (dropout OFF on that layer) to train with the explicit
    penalty instead of sampled masks:

    - ``loss="squared"`` (exact): ``(1-keep)/keep * sum_j h_j^2 ||W_:j||^2`` per example;
      ``clean_sse + penalty`` equals the expected dropout loss, where ``clean_sse`` is the
      per-example squared error summed over outputs. With ``output_reduction="mean"`` the
      penalty is divided by O, matching a loss that averages over outputs
      (``nn.MSELoss`` on (B, O) targets).
    - ``loss="cross_entropy"`` (second-order, Wei, Kakade & Ma 2020):
      ``(1-keep)/(2 keep) * sum_j h_j^2 W_:j^T (diag(p) - p p^T) W_:j``, ``p = softmax(logits)``.

    The derivation is in the module docstring and docs/theory.md.

    Args:
        loss: ``"cross_entropy"`` or ``"squared"``.
        output_reduction: ``"sum"`` or ``"mean"`` over outputs (squared loss only).
        detach_probs: for cross-entropy, treat ``p`` as a constant in the backward pass
            (the penalty then acts only through ``h`` and ``W``). Default False: the exact
            gradient of the penalty.

    Shape:
        - hidden: ``(..., B, H)``, the last hidden activations (dropout off).
        - weight: ``(..., O, H)``, the output layer's weight.
        - logits: ``(..., B, O)``, the clean output ``W h + b`` (cross-entropy only; may be
          None for squared loss).
        - keep: a float, or a tensor of the leading shape ``(...)`` (one rate per member).
        - Output: ``(...)``, the penalty averaged over the batch (per member).

    Example:
        >>> pen = ExplicitDropoutPenalty("cross_entropy")
        >>> h, W = torch.rand(8, 5), torch.randn(3, 5)
        >>> pen(h, W, h @ W.T, keep=0.5).shape
        torch.Size([])
    """

    def __init__(
        self,
        loss: str = "cross_entropy",
        *,
        output_reduction: str = "sum",
        detach_probs: bool = False,
    ) -> None:
        super().__init__()
        self.loss = check_choice(loss, "loss", LOSSES)
        self.output_reduction = check_choice(output_reduction, "output_reduction", ("sum", "mean"))
        self.detach_probs = bool(detach_probs)

    def extra_repr(self) -> str:
        return (
            f"loss={self.loss!r}, output_reduction={self.output_reduction!r}, "
            f"detach_probs={self.detach_probs}"
        )

    def forward(
        self,
        hidden: Tensor,
        weight: Tensor,
        logits: Tensor | None,
        keep: float | Tensor,
    ) -> Tensor:
        if hidden.dim() < 2 or weight.dim() < 2:
            raise ValueError(
                f"hidden must be (..., B, H) and weight (..., O, H); got hidden "
                f"{tuple(hidden.shape)}, weight {tuple(weight.shape)}"
            )
        lead = tuple(hidden.shape[:-2])
        if weight.shape[-1] != hidden.shape[-1] or tuple(weight.shape[:-2]) != lead:
            raise ValueError(
                f"weight must have shape (*{lead}, O, {hidden.shape[-1]}) to match hidden "
                f"{tuple(hidden.shape)}, got {tuple(weight.shape)}"
            )
        coef = _coefficient(keep, lead, hidden)
        h2 = hidden.pow(2)  # (..., B, H)
        if self.loss == "squared":
            col = weight.pow(2).sum(-2)  # (..., H)   ||W_:j||^2
            per_example = coef * (h2 * col.unsqueeze(-2)).sum(-1)  # (..., B)
            if self.output_reduction == "mean":
                per_example = per_example / weight.shape[-2]
            return per_example.mean(-1)  # (...)
        expected = (*lead, hidden.shape[-2], weight.shape[-2])
        if logits is None or tuple(logits.shape) != expected:
            got = None if logits is None else tuple(logits.shape)
            raise ValueError(f"logits must have shape {expected} (..., B, O), got {got}")
        p = torch.softmax(logits, dim=-1)  # (..., B, O)
        if self.detach_probs:
            p = p.detach()
        first = p @ weight  # (..., B, H)   sum_o p_o W_oj
        second = p @ weight.pow(2)  # (..., B, H)   sum_o p_o W_oj^2
        curvature = second - first.pow(2)  # (..., B, H)  W_:j^T H W_:j >= 0
        per_example = 0.5 * coef * (h2 * curvature).sum(-1)  # (..., B)
        return per_example.mean(-1)  # (...)
