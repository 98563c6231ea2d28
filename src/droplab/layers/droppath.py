"""Stochastic depth: DropPath drops a whole example's residual branch."""

from __future__ import annotations

import torch
from torch import nn

from droplab import functional as F
from droplab._validate import check_generator, check_rate
from droplab.layers.bernoulli import rate_repr

__all__ = ["DropPath"]


class DropPath(nn.Module):
    r"""Stochastic depth (Huang et al. 2016): :math:`y_n = x_n m_n/\text{keep}`, one
    Bernoulli(keep) per example, on a residual branch: ``x + drop_path(branch(x))``.

    ``scale_by_keep=False`` leaves kept examples unscaled. Identity in eval.

    Shape:
        Input: ``(N, *)``. Output: same shape.

    Example:
        >>> import torch, droplab as dl
        >>> dl.DropPath(0.1)
        DropPath(rate=0.1, keep=0.9)
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        keep: float | None = None,
        scale_by_keep: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep)
        if not isinstance(scale_by_keep, bool):
            raise TypeError(f"scale_by_keep must be a bool, got {scale_by_keep!r}")
        self.scale_by_keep = scale_by_keep
        self.generator = check_generator(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.drop_path(
            x,
            self.rate,
            training=self.training,
            scale_by_keep=self.scale_by_keep,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        s = rate_repr(self.rate, self.keep)
        return s if self.scale_by_keep else s + ", scale_by_keep=False"
