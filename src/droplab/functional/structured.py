"""Structured dropout of conv feature maps: whole channels (SpatialDropout) and
contiguous blocks (DropBlock)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from droplab._validate import (
    DEFAULT_RATE,
    check_bool,
    check_float_tensor,
    check_generator,
    check_positive_int,
    check_rate,
)
from droplab.functional._common import (
    _times,
    _uniform,
    _work_dtype,
    _write,
)
from droplab.functional.bernoulli import dropout

# --------------------------------------------------------------------------- structured


def _check_spatial_rank(x: torch.Tensor, op: str, ranks: Sequence[int], shape_text: str) -> None:
    if x.ndim not in ranks:
        raise ValueError(
            f"{op} expects input of shape {shape_text}, got shape {tuple(x.shape)} (rank {x.ndim})"
        )


def _channel_dims(x: torch.Tensor, op: str, spatial_dims: int | None) -> tuple[int, ...]:
    """The spatial dims of a channel-wise op's input (where one mask value is shared).

    ``spatial_dims=None``: ``(N, C, *spatial)`` with at least one spatial dim. An int
    ``k``: ``(N, C, *k dims)`` or the unbatched ``(C, *k dims)``, as torch's
    ``Dropout1d``/``Dropout3d`` accept."""
    if spatial_dims is None:
        if x.ndim < 3:
            raise ValueError(
                f"{op} expects input of shape (N, C, *spatial) with at least one spatial "
                f"dim (rank >= 3), got shape {tuple(x.shape)} (rank {x.ndim}); for (N, D) "
                "input use dropout, for unbatched (C, *spatial) input pass spatial_dims"
            )
        return tuple(range(2, x.ndim))
    k = check_positive_int(spatial_dims, "spatial_dims")
    if x.ndim not in (k + 1, k + 2):
        raise ValueError(
            f"{op} with spatial_dims={k} expects input of shape (N, C, *{k} dims) (rank "
            f"{k + 2}) or unbatched (C, *{k} dims) (rank {k + 1}), got shape "
            f"{tuple(x.shape)} (rank {x.ndim})"
        )
    return tuple(range(x.ndim - k, x.ndim))


def spatial_dropout(
    x: torch.Tensor,
    rate: float | None = DEFAULT_RATE,
    *,
    keep: float | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
    spatial_dims: int | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    r"""Drop whole channels: :math:`y_{n,c,\ldots} = x_{n,c,\ldots}\, m_{n,c} / \text{keep}`.

    One Bernoulli(keep) draw per (example, channel), shared over all spatial positions, so
    correlated neighbouring activations cannot stand in for a dropped one (Tompson et al.
    2015, "Efficient Object Localization Using Convolutional Networks"). Any number >= 1 of
    spatial dims.

    The rank alone cannot tell ``(N, C, L)`` from an unbatched ``(C, H, W)``: without
    ``spatial_dims`` the input is always batched, ``(N, C, *spatial)``, and rank < 3 is an
    error (``torch.nn.Dropout2d`` guesses, with a warning, for 3-D input). With
    ``spatial_dims=k`` the input is ``(N, C, *k dims)`` or unbatched ``(C, *k dims)``
    (``torch.nn.Dropout1d``: ``k=1``, ``Dropout3d``: ``k=3``). ``inplace`` as in
    :func:`dropout`.

    Shape:
        Input: ``(N, C, *spatial)``, or ``(C, *spatial)`` with ``spatial_dims`` given.
        Output: same shape and memory layout.
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_bool(inplace, "inplace")
    dims = _channel_dims(x, "spatial_dropout", spatial_dims)
    y = dropout(x, rate, training=training, broadcast_dims=dims, generator=generator)
    return _write(x, y, inplace)


def _block_tuple(block_size: int | Sequence[int], n_spatial: int | None) -> tuple[int, ...]:
    """``block_size`` as a tuple of positive ints (an int means the same size on every dim)."""
    if isinstance(block_size, Sequence) and not isinstance(block_size, str):
        blocks = tuple(check_positive_int(b, "block_size") for b in block_size)
        if n_spatial is not None and len(blocks) != n_spatial:
            raise ValueError(
                f"block_size must be an int or a tuple of {n_spatial} ints for an input "
                f"with {n_spatial} spatial dims, got {tuple(block_size)!r}"
            )
        if not 1 <= len(blocks) <= 3:
            raise ValueError(f"block_size must be an int or 1 to 3 ints, got {block_size!r}")
        return blocks
    b = check_positive_int(block_size, "block_size")
    return (b,) * (n_spatial or 1)


def _coverage_counts(size: int, block: int) -> list[int]:
    """For each position i of a dim of ``size``: how many valid block starts cover it.

    Block starts s range over the valid region 0 .. size - block (blocks lie fully inside,
    Ghiasi et al. 2018); s covers i when s <= i <= s + block - 1.
    """
    last = size - block
    return [min(i, last) - max(0, i - block + 1) + 1 for i in range(size)]


def _coverage_histogram(spatial: tuple[int, ...], blocks: tuple[int, ...]) -> dict[int, int]:
    """{c: number of positions covered by exactly c valid block starts}, c = prod_d c_d."""
    hist = {1: 1}
    for size, block in zip(spatial, blocks):
        dim_hist: dict[int, int] = {}
        for c in _coverage_counts(size, block):
            dim_hist[c] = dim_hist.get(c, 0) + 1
        new: dict[int, int] = {}
        for a, na in hist.items():
            for b, nb in dim_hist.items():
                new[a * b] = new.get(a * b, 0) + na * nb
        hist = new
    return hist


@functools.lru_cache(maxsize=1024)
def _drop_block_gamma_exact(spatial: tuple[int, ...], blocks: tuple[int, ...], rate: float):
    hist = _coverage_histogram(spatial, blocks)
    total = math.prod(spatial)

    def dropped_fraction(gamma: float) -> float:  # E[fraction of dropped units], increasing
        return sum(n * -math.expm1(c * math.log1p(-gamma)) for c, n in hist.items()) / total

    lo, hi = 0.0, 1.0  # dropped_fraction(0) = 0, dropped_fraction(1) = 1 (every c >= 1)
    for _ in range(100):  # bisection to float precision
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if dropped_fraction(mid) < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def drop_block_gamma(
    spatial_shape: Sequence[int],
    rate: float,
    block_size: int | Sequence[int],
    *,
    exact: bool = True,
) -> float:
    r"""The per-position seed probability :math:`\gamma` of DropBlock.

    Block starts are drawn only in the valid region (a block lies fully inside the map),
    :math:`\prod_d (S_d - b_d + 1)` positions. A unit covered by :math:`c(u)` possible block
    starts is dropped with probability :math:`1 - (1 - \gamma)^{c(u)}`.

    * ``exact=False``: Ghiasi et al. 2018 (NeurIPS, "DropBlock", eq. 1) with the valid-region
      correction, :math:`\gamma = \frac{\text{rate}}{\prod_d b_d}
      \prod_d \frac{S_d}{S_d - b_d + 1}`; it counts overlapping blocks twice, so the
      dropped fraction falls below ``rate`` as ``rate`` grows (0.39 instead of 0.5 at
      rate 0.5, block 3, on a 13 x 7 map).
    * ``exact=True`` (what :func:`drop_block` uses): the :math:`\gamma` that solves
      :math:`\frac{1}{|S|}\sum_u 1 - (1 - \gamma)^{c(u)} = \text{rate}` (bisection), so the
      expected dropped fraction equals ``rate`` for any shape, H != W included. It agrees
      with Ghiasi's to first order in ``rate``.
    """
    spatial = tuple(int(s) for s in spatial_shape)
    blocks = _block_tuple(block_size, len(spatial))
    rate = check_rate(rate, None)[0]
    for size, block in zip(spatial, blocks):
        if block > size:
            raise ValueError(
                f"block_size {blocks} does not fit spatial shape {spatial}: need block_size "
                f"<= spatial size on every dim"
            )
    if not exact:
        valid = math.prod(s - b + 1 for s, b in zip(spatial, blocks))
        return rate / math.prod(blocks) * math.prod(spatial) / valid
    if rate in (0.0, 1.0):
        return rate
    if torch.compiler.is_compiling():  # dynamo warns on lru_cache; it folds the plain call
        return _drop_block_gamma_exact.__wrapped__(spatial, blocks, rate)
    return _drop_block_gamma_exact(spatial, blocks, rate)


def drop_block_keep_prob(
    spatial_shape: Sequence[int], gamma: float, block_size: int | Sequence[int]
) -> torch.Tensor:
    r"""P(unit u is kept) :math:`= (1 - \gamma)^{c(u)}` for every position, float64 ``spatial_shape``."""
    spatial = tuple(int(s) for s in spatial_shape)
    blocks = _block_tuple(block_size, len(spatial))
    counts = torch.ones((), dtype=torch.float64)
    for d, (size, block) in enumerate(zip(spatial, blocks)):
        c = torch.tensor(_coverage_counts(size, block), dtype=torch.float64)
        counts = counts.unsqueeze(-1) * c if d else c  # (S_0, ..., S_d)
    return torch.exp(counts * math.log1p(-gamma))  # (*spatial)


def drop_block(
    x: torch.Tensor,
    rate: float | None,
    block_size: int | Sequence[int],
    *,
    keep: float | None = None,
    training: bool = True,
    couple_channels: bool = False,
    scale_by_keep: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""DropBlock (Ghiasi et al. 2018, NeurIPS): drop contiguous blocks of a feature map.

    For each (example, channel) block starts are drawn as Bernoulli(:math:`\gamma`) in the
    valid region, where a ``block_size`` block fits fully inside the map, and every unit of
    each started block is dropped; ``couple_channels=True`` draws one set of blocks per
    example, shared by all its channels (timm's ``couple_channels``). :math:`\gamma` is
    solved so that the expected fraction of dropped units equals ``rate`` for any shape,
    including H != W (see :func:`drop_block_gamma`). Units near a border are covered by
    fewer possible blocks and dropped less often; with ``scale_by_keep`` (default) each
    unit is rescaled by its own keep probability :math:`p_u = (1-\gamma)^{c(u)}`,

    .. math:: y_u = x_u\, m_u / p_u,

    so :math:`E[y] = x` at every position, borders included; ``scale_by_keep=False`` gives
    :math:`y_u = x_u m_u`. Identity in eval; ``rate == 1`` gives zeros.

    Args:
        x: ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)`` input.
        rate: target fraction of dropped units, in [0, 1] (or give ``keep``).
        block_size: block edge, an int or one int per spatial dim; each <= that spatial size.
        couple_channels: one block mask per example for all channels (default: per channel).
        scale_by_keep: rescale kept units by their keep probability (default True).

    Shape:
        Input: ``(N, C, *spatial)`` with 1 to 3 spatial dims. Output: same shape.

    Example:
        >>> drop_block(torch.ones(2, 3, 10, 7), 0.2, 3).shape
        torch.Size([2, 3, 10, 7])
    """
    check_float_tensor(x, "x")
    rate, keep = check_rate(rate, keep)
    check_bool(couple_channels, "couple_channels")
    check_bool(scale_by_keep, "scale_by_keep")
    check_generator(generator)
    if x.ndim not in (3, 4, 5):
        raise ValueError(
            "drop_block expects input of shape (N, C, L), (N, C, H, W) or (N, C, D, H, W), "
            f"got shape {tuple(x.shape)} (rank {x.ndim})"
        )
    spatial = tuple(x.shape[2:])
    blocks = _block_tuple(block_size, len(spatial))
    if any(b > s for b, s in zip(blocks, spatial)):
        raise ValueError(
            f"block_size {blocks} is larger than the input's spatial shape {spatial} "
            f"(input shape {tuple(x.shape)}); need 1 <= block_size <= spatial size"
        )
    if not training or rate == 0.0:
        return x
    if rate == 1.0:
        return x * 0.0
    gamma = drop_block_gamma(spatial, rate, blocks)
    valid = [s - b + 1 for s, b in zip(spatial, blocks)]
    channels = 1 if couple_channels else x.shape[1]
    seeds = _uniform((x.shape[0], channels, *valid), x, generator) < gamma
    seeds = seeds.to(_work_dtype(x))  # (N, C or 1, *valid)
    pad = [p for b in reversed(blocks) for p in (b - 1, b - 1)]
    seeds = torch.nn.functional.pad(seeds, pad)  # (N, C or 1, *(S + b - 1))
    pool = (
        torch.nn.functional.max_pool1d,
        torch.nn.functional.max_pool2d,
        torch.nn.functional.max_pool3d,
    )[len(spatial) - 1]
    dropped = pool(seeds, kernel_size=blocks, stride=1)  # (N, C or 1, *spatial), 1 = dropped
    if scale_by_keep:
        keep_prob = drop_block_keep_prob(spatial, gamma, blocks).to(x.device, _work_dtype(x))
        kept_value = 1.0 / keep_prob  # (*spatial)
    else:
        kept_value = torch.ones((), dtype=_work_dtype(x), device=x.device)
    # 1/p_u where kept, 0 where dropped: never 0/0 where p_u underflows (rate near 1)
    mult = torch.where(dropped > 0, 0.0, kept_value)  # (N, C or 1, *spatial)
    return _times(x, mult)
