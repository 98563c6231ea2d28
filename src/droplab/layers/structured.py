"""Structured dropout for feature maps: SpatialDropout (whole channels), DropBlock (blocks)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from droplab import functional as F
from droplab._validate import (
    DEFAULT_RATE,
    check_bool,
    check_positive_int,
    check_rate,
)
from droplab.layers._seed import init_randomness
from droplab.layers.bernoulli import TorchNames, rate_repr

__all__ = ["DropBlock", "SpatialDropout"]


class SpatialDropout(TorchNames, nn.Module):
    r"""Drop whole channels of ``(N, C, *spatial)`` input, any number >= 1 of spatial dims:
    ``torch.nn.Dropout1d``/``Dropout2d``/``Dropout3d`` in one layer.

    :math:`y_{n,c,\ldots} = x_{n,c,\ldots}\, m_{n,c}/\text{keep}`, one Bernoulli(keep) per
    (example, channel) (Tompson et al. 2015). Identity in eval.

    The rank alone cannot tell a batched ``(N, C, L)`` from an unbatched ``(C, H, W)``:
    without ``spatial_dims`` input is always batched and rank < 3 raises a ``ValueError``
    (``torch.nn.Dropout2d`` guesses, with a warning); ``spatial_dims=k`` also accepts the
    unbatched ``(C, *k dims)`` (``Dropout1d`` is ``k=1``, ``Dropout3d`` is ``k=3``).

    Args:
        rate: probability of dropping a channel (or ``p``, torch's name, or ``keep``).
        inplace: write the result into the input (torch's ``inplace``).
        spatial_dims: number of spatial dims, to accept unbatched input; ``None``: any
            number, batched input only.

    Shape:
        Input: ``(N, C, *spatial)``, or ``(C, *spatial)`` with ``spatial_dims``.
        Output: same shape and memory layout.

    Example:
        >>> import torch, droplab as dl
        >>> dl.SpatialDropout(0.2)(torch.ones(4, 3, 5, 7)).shape
        torch.Size([4, 3, 5, 7])
    """

    def __init__(
        self,
        rate: float | None = DEFAULT_RATE,
        inplace: bool = False,
        *,
        p: float | None = None,
        keep: float | None = None,
        spatial_dims: int | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep, p=p)
        self.inplace = check_bool(inplace, "inplace")
        if spatial_dims is not None:
            spatial_dims = check_positive_int(spatial_dims, "spatial_dims")
        self.spatial_dims = spatial_dims
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.spatial_dropout(
            x,
            self.rate,
            training=self.training,
            generator=self.generator,
            spatial_dims=self.spatial_dims,
            inplace=self.inplace,
        )

    def extra_repr(self) -> str:
        s = rate_repr(self.rate, self.keep)
        if self.spatial_dims is not None:
            s += f", spatial_dims={self.spatial_dims}"
        return s + (", inplace=True" if self.inplace else "")


class DropBlock(nn.Module):
    r"""DropBlock (Ghiasi et al. 2018): drop contiguous ``block_size`` blocks of 1-D
    ``(N, C, L)`` or 2-D ``(N, C, H, W)`` feature maps.

    Block starts are Bernoulli(:math:`\gamma`) in the valid region (blocks lie inside the
    map), with :math:`\gamma` solved so the expected dropped fraction equals ``rate`` for any
    shape (H != W included; :func:`droplab.functional.drop_block_gamma`). Each unit is
    rescaled by its own keep probability, so :math:`E[y] = x` at borders too. Identity in
    eval.

    Args:
        rate: expected fraction of dropped units, in [0, 1] (``None`` if ``keep`` given).
        block_size: block edge; an int, or one int per spatial dim.

    Shape:
        Input: ``(N, C, L)`` or ``(N, C, H, W)``. Output: same shape.

    Example:
        >>> import torch, droplab as dl
        >>> dl.DropBlock(0.1, 3)(torch.ones(2, 4, 9, 12)).shape
        torch.Size([2, 4, 9, 12])
    """

    def __init__(
        self,
        rate: float | None,
        block_size: int | Sequence[int],
        *,
        keep: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep)
        blocks = F._block_tuple(block_size, None)
        self.block_size = blocks[0] if isinstance(block_size, int) else blocks
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.drop_block(
            x, self.rate, self.block_size, training=self.training, generator=self.generator
        )

    def extra_repr(self) -> str:
        return f"{rate_repr(self.rate, self.keep)}, block_size={self.block_size}"
