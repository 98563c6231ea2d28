"""R-Drop (Liang et al. 2021, "R-Drop: Regularized Dropout for Neural Networks", NeurIPS):
the consistency loss between two dropout passes of the same batch."""

from __future__ import annotations

import torch

from droplab._validate import check_choice, check_float_tensor

__all__ = ["r_drop_loss"]


def r_drop_loss(
    logits_a: torch.Tensor, logits_b: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""The symmetric KL divergence of R-Drop between the predictive distributions of two
    forward passes (different dropout masks) of the same inputs,

    .. math:: \mathcal{L}_{KL} = \tfrac12\left(D_{KL}(P_a \,\|\, P_b) + D_{KL}(P_b \,\|\, P_a)\right),

    with :math:`P = \mathrm{softmax}` over the last dim (Liang et al. 2021, eq. 2). Add
    :math:`\alpha\,\mathcal{L}_{KL}` to the two passes' task loss. Gradients flow into both
    passes, as in the paper.

    Args:
        logits_a, logits_b: logits of the two passes, same shape ``(*, classes)``.
        reduction: ``"mean"`` (over the examples, the leading dims), ``"sum"`` or ``"none"``
            (one value per example).

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), dl.Dropout(0.3), torch.nn.Linear(8, 3))
        >>> x = torch.randn(5, 4)
        >>> dl.r_drop_loss(net(x), net(x)).item() >= 0
        True
    """
    check_float_tensor(logits_a, "logits_a")
    check_float_tensor(logits_b, "logits_b")
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if logits_a.shape != logits_b.shape or logits_a.ndim == 0:
        raise ValueError(
            "r_drop_loss needs two logits tensors of the same shape (*, classes), got "
            f"{tuple(logits_a.shape)} and {tuple(logits_b.shape)}"
        )
    log_a = torch.log_softmax(logits_a, dim=-1)
    log_b = torch.log_softmax(logits_b, dim=-1)
    # KL(a || b) + KL(b || a) = sum (p_a - p_b)(log p_a - log p_b)
    per_example = 0.5 * ((log_a.exp() - log_b.exp()) * (log_a - log_b)).sum(dim=-1)  # (*)
    if reduction == "none":
        return per_example
    return per_example.sum() if reduction == "sum" else per_example.mean()
