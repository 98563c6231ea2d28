"""Dropping whole residual paths (stochastic depth) and weights (DropConnect)."""

from __future__ import annotations

import torch

from droplab._validate import (
    check_bool,
    check_choice,
    check_float_tensor,
    check_generator,
    check_rate,
)
from droplab.functional._common import (
    DROP_PATH_MODES,
    _inverted,
    _uniform,
)
from droplab.functional.bernoulli import dropout

# --------------------------------------------------------------------------- paths, weights


def drop_path(
    x: torch.Tensor,
    rate: float | None = None,
    *,
    keep: float | None = None,
    training: bool = True,
    scale_by_keep: bool = True,
    mode: str = "row",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Stochastic depth: drop a whole example's residual branch.

    :math:`y_n = x_n m_n / \text{keep}` with one :math:`m_n \sim \mathrm{Bernoulli}(\text{keep})`
    per example (dim 0, ``mode="row"``) or one :math:`m` for the whole batch
    (``mode="batch"``, torchvision's ``StochasticDepth``); without ``scale_by_keep``
    :math:`y_n = x_n m_n`. Apply it to the branch, ``out = shortcut + drop_path(branch(x),
    rate)`` (Huang et al. 2016, "Deep Networks with Stochastic Depth"; Larsson et al. 2017,
    FractalNet). Identity in eval.

    Shape:
        Input: ``(N, *)``. Output: same shape.
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_bool(scale_by_keep, "scale_by_keep")
    check_choice(mode, "mode", DROP_PATH_MODES)
    check_generator(generator)
    if x.ndim == 0:
        raise ValueError("drop_path expects input of shape (N, *), got a 0-d tensor")
    if not training or rate == 0.0:
        return x
    if rate == 1.0:
        return x * 0.0
    rows = x.shape[0] if mode == "row" else 1
    kept = _uniform((rows,) + (1,) * (x.ndim - 1), x, generator) < keep  # (N or 1, 1, ...)
    if scale_by_keep:
        return _inverted(x, kept, keep)
    return x * kept.to(x.dtype)


def drop_connect_weight(
    w: torch.Tensor,
    rate: float | None = None,
    *,
    keep: float | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""DropConnect on a weight tensor: :math:`\tilde W = W \odot M / \text{keep}`,
    :math:`M_{ij} \sim \mathrm{Bernoulli}(\text{keep})` (Wan et al. 2013, ICML).

    Inverted scaling, so the eval rule is the plain weight (Wan et al. instead match
    moments with a Gaussian at inference; the mean rule is the common simplification).

    Shape:
        Input: any weight shape. Output: same shape.
    """
    check_float_tensor(w, "w")
    rate, keep = check_rate(rate, keep)
    return dropout(w, rate, training=training, generator=generator)
