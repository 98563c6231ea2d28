"""DropConnect: drop the weights of a wrapped linear or convolution layer."""

from __future__ import annotations

import torch
from torch import nn

from droplab import functional as F
from droplab._validate import check_rate
from droplab.layers._seed import init_randomness
from droplab.layers.bernoulli import rate_repr

__all__ = ["DropConnect"]

_WRAPPABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class DropConnect(nn.Module):
    r"""DropConnect (Wan et al. 2013, ICML): a fresh Bernoulli mask on the wrapped layer's
    weight at every training forward, :math:`\tilde W = W \odot M/\text{keep}`; the bias is
    not dropped. Eval uses :math:`W` (inverted scaling, mean rule).

    The wrapped layer stays a submodule (``self.module``), so its parameters, optimizer
    state and ``state_dict`` keys (``module.weight``, ``module.bias``) are the usual ones.

    Args:
        module: an ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d``.
        rate: probability of dropping a weight (or give ``keep``).

    Shape:
        Those of the wrapped layer.

    Example:
        >>> import torch, droplab as dl
        >>> layer = dl.DropConnect(torch.nn.Linear(4, 3), 0.5)
        >>> layer(torch.ones(2, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        module: nn.Module,
        rate: float | None = None,
        *,
        keep: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, _WRAPPABLE):
            raise TypeError(
                "DropConnect wraps an nn.Linear, nn.Conv1d, nn.Conv2d or nn.Conv3d, got "
                f"{type(module).__name__}"
            )
        self.module = module
        self.rate, self.keep = check_rate(rate, keep)
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.drop_connect_weight(
            self.module.weight, self.rate, training=self.training, generator=self.generator
        )
        if isinstance(self.module, nn.Linear):
            return nn.functional.linear(x, w, self.module.bias)
        return self.module._conv_forward(x, w, self.module.bias)

    def extra_repr(self) -> str:
        return rate_repr(self.rate, self.keep)
