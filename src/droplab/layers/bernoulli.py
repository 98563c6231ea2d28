"""Bernoulli dropout: element-wise (``Dropout``) and exact-count (``FixedCountDropout``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from droplab import functional as F
from droplab._validate import (
    DEFAULT_RATE,
    check_bool,
    check_choice,
    check_dims,
    check_rate,
)
from droplab.layers._seed import init_randomness

__all__ = ["Dropout", "FixedCountDropout", "TorchNames", "rate_repr"]


def rate_repr(rate: float, keep: float) -> str:
    """``"rate=0.3, keep=0.7"``: both conventions, so ``print(model)`` is unambiguous."""
    return f"rate={rate:g}, keep={keep:g}"


class TorchNames:
    """``p``, torch's name for ``rate``, readable and settable on a layer (``layer.p``), as
    code written for ``torch.nn.Dropout`` expects; setting it sets ``rate`` and ``keep``."""

    rate: float
    keep: float

    @property
    def p(self) -> float:
        return self.rate

    @p.setter
    def p(self, value: float) -> None:
        self.rate, self.keep = check_rate(value, None)


class Dropout(TorchNames, nn.Module):
    r"""Element-wise Bernoulli dropout, a drop-in replacement for ``torch.nn.Dropout``.

    In training each unit is kept with probability ``keep = 1 - rate``
    (:math:`m_i \sim \mathrm{Bernoulli}(\text{keep})`):

    * ``scaling="inverted"``: :math:`y = x \odot m / \text{keep}` in training, :math:`y = x`
      in eval (PyTorch, Keras).
    * ``scaling="classic"``: :math:`y = x \odot m` in training, :math:`y = \text{keep}\,x` in
      eval (Hinton et al. 2012, arXiv:1207.0580; Srivastava et al. 2014, JMLR 15).

    ``broadcast_dims`` shares one mask along the given dims (Keras ``noise_shape``, Flax
    ``broadcast_dims``), e.g. ``broadcast_dims=1`` on ``(N, T, D)`` drops the same features
    at every time step (variational dropout of Gal & Ghahramani 2016).

    Args:
        rate: probability of dropping a unit, in [0, 1]; ``rate=1`` gives zeros.
        inplace: write the result into the input (torch's ``inplace``).
        p: torch's name for ``rate`` (``Dropout(p=0.3)``); equal to ``rate`` if both given.
        keep: probability of keeping a unit; give it instead of ``rate``.
        scaling: ``"inverted"`` (default) or ``"classic"``.
        broadcast_dims: dims along which the mask is shared.
        generator: random source for the masks; ``None`` uses torch's global RNG.
        backend: ``"auto"``, ``"fast"`` or ``"torch"`` (see :func:`droplab.functional.dropout`).

    Shape:
        Input: ``(*)``. Output: ``(*)``, same shape and memory layout.

    Example:
        >>> import torch, droplab as dl
        >>> layer = dl.Dropout(0.2)
        >>> layer
        Dropout(rate=0.2, keep=0.8, scaling='inverted')
        >>> layer(torch.randn(8, 16)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        rate: float | None = DEFAULT_RATE,
        inplace: bool = False,
        *,
        p: float | None = None,
        keep: float | None = None,
        scaling: str = "inverted",
        broadcast_dims: int | Sequence[int] = (),
        generator: torch.Generator | None = None,
        seed: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep, p=p)
        self.inplace = check_bool(inplace, "inplace")
        self.scaling = check_choice(scaling, "scaling", F.SCALINGS)
        self.broadcast_dims = check_dims(broadcast_dims, "broadcast_dims")
        init_randomness(self, generator, seed)
        self.backend = check_choice(backend, "backend", F.BACKENDS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(
            x,
            self.rate,
            training=self.training,
            scaling=self.scaling,
            broadcast_dims=self.broadcast_dims,
            generator=self.generator,
            backend=self.backend,
            inplace=self.inplace,
        )

    def extra_repr(self) -> str:
        s = f"{rate_repr(self.rate, self.keep)}, scaling={self.scaling!r}"
        if self.broadcast_dims:
            s += f", broadcast_dims={self.broadcast_dims}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        if self.inplace:
            s += ", inplace=True"
        return s


class FixedCountDropout(TorchNames, nn.Module):
    r"""Drop exactly ``round(rate * n)`` of the ``n`` units along the last dim, per example.

    A fixed number of active units instead of a fixed probability: every example gets a
    uniformly random subset of ``k = round(rate * n)`` dropped units. Scaling uses the
    exact kept fraction :math:`\kappa = (n - k)/n` (``"inverted"``: :math:`x \odot m/\kappa`
    in training, identity in eval; ``"classic"``: :math:`x \odot m` in training,
    :math:`\kappa x` in eval). ``backend``: ``"auto"``, ``"fast"`` or ``"torch"`` (see
    :func:`droplab.functional.fixed_count_dropout`).

    Shape:
        Input: ``(*, n)``. Output: same shape.

    Example:
        >>> import torch, droplab as dl
        >>> y = dl.FixedCountDropout(0.25)(torch.ones(3, 8))
        >>> (y == 0).sum(dim=-1).tolist()
        [2, 2, 2]
    """

    def __init__(
        self,
        rate: float | None = DEFAULT_RATE,
        *,
        keep: float | None = None,
        scaling: str = "inverted",
        generator: torch.Generator | None = None,
        seed: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep)
        self.scaling = check_choice(scaling, "scaling", F.SCALINGS)
        init_randomness(self, generator, seed)
        self.backend = check_choice(backend, "backend", F.BACKENDS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.fixed_count_dropout(
            x,
            self.rate,
            training=self.training,
            scaling=self.scaling,
            generator=self.generator,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        s = f"{rate_repr(self.rate, self.keep)}, scaling={self.scaling!r}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s
