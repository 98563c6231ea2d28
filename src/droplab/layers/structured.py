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

__all__ = ["DropBlock", "SpatialDropout", "drop_block_schedule"]


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
    ``(N, C, L)``, 2-D ``(N, C, H, W)`` or 3-D ``(N, C, D, H, W)`` feature maps.

    Block starts are Bernoulli(:math:`\gamma`) in the valid region (blocks lie inside the
    map), with :math:`\gamma` solved so the expected dropped fraction equals ``rate`` for any
    shape (H != W included; :func:`droplab.functional.drop_block_gamma`). Each unit is
    rescaled by its own keep probability, so :math:`E[y] = x` at borders too
    (``scale_by_keep=False``: no rescaling). ``couple_channels=True`` shares one block mask
    between all channels of an example (timm's ``couple_channels``); the default draws one
    per channel. Identity in eval. Ghiasi et al. raise the rate linearly from 0 over
    training: :func:`droplab.drop_block_schedule`.

    Args:
        rate: expected fraction of dropped units, in [0, 1] (``None`` if ``keep`` given).
        block_size: block edge; an int, or one int per spatial dim.
        couple_channels: one mask for all channels of an example.
        scale_by_keep: rescale kept units by their keep probability.

    Shape:
        Input: ``(N, C, *spatial)`` with 1 to 3 spatial dims. Output: same shape.

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
        couple_channels: bool = False,
        scale_by_keep: bool = True,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep)
        blocks = F._block_tuple(block_size, None)
        self.block_size = blocks[0] if isinstance(block_size, int) else blocks
        self.couple_channels = check_bool(couple_channels, "couple_channels")
        self.scale_by_keep = check_bool(scale_by_keep, "scale_by_keep")
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.drop_block(
            x,
            self.rate,
            self.block_size,
            training=self.training,
            couple_channels=self.couple_channels,
            scale_by_keep=self.scale_by_keep,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        s = f"{rate_repr(self.rate, self.keep)}, block_size={self.block_size}"
        if self.couple_channels:
            s += ", couple_channels=True"
        return s if self.scale_by_keep else s + ", scale_by_keep=False"


def drop_block_schedule(model: nn.Module, rate: float, step: int, total_steps: int) -> float:
    r"""Set the rate of every :class:`DropBlock` in ``model`` for training step ``step``:
    :math:`\text{rate} \cdot \min(1, \text{step}/\text{total\_steps})`, Ghiasi et al.'s
    linear increase from 0 (keep 1) to the target (their sec. 3, "Scheduled DropBlock").
    Returns the rate set. Call it once per step (or epoch) of any training loop.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(dl.DropBlock(0.0, 3))
        >>> dl.drop_block_schedule(net, 0.1, step=250, total_steps=1000)
        0.025
    """
    target = check_rate(rate, None)[0]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    total = check_positive_int(total_steps, "total_steps")
    blocks = [m for m in model.modules() if isinstance(m, DropBlock)]
    if not blocks:
        raise ValueError(f"drop_block_schedule found no DropBlock module in {type(model).__name__}")
    current = target * min(1.0, step / total)
    for m in blocks:
        m.rate, m.keep = current, 1.0 - current
    return current
