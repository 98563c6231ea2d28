"""Gaussian noise family: GaussianDropout (multiplicative), GaussianNoise (additive),
AlphaDropout (SELU-preserving)."""

from __future__ import annotations

import torch
from torch import nn

from droplab import functional as F
from droplab._validate import (
    DEFAULT_RATE,
    check_bool,
    check_choice,
    check_nonneg_float,
    check_positive_int,
    check_rate,
)
from droplab.layers._seed import init_randomness
from droplab.layers.bernoulli import TorchNames, rate_repr

__all__ = ["AlphaDropout", "FeatureAlphaDropout", "GaussianDropout", "GaussianNoise"]


class GaussianDropout(nn.Module):
    r"""Multiplicative Gaussian noise: :math:`y = x \odot (1 + \sigma\varepsilon)`,
    :math:`\varepsilon \sim N(0, I)`, in training; identity in eval.

    Give ``rate`` (or ``keep``) for :math:`\sigma^2 = \text{rate}/(1-\text{rate})`, the
    variance of inverted Bernoulli dropout at that rate, or ``sigma`` directly
    (Srivastava et al. 2014, JMLR 15, sec. 10). The repr shows the equivalent rate either way.

    Shape:
        Input: ``(*)``. Output: same shape.

    Example:
        >>> import torch, droplab as dl
        >>> dl.GaussianDropout(0.5)
        GaussianDropout(rate=0.5, keep=0.5, sigma=1)
        >>> dl.GaussianDropout(0.5)(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        keep: float | None = None,
        sigma: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.sigma = F.gaussian_sigma(rate, keep=keep, sigma=sigma)
        # the Bernoulli rate with the same multiplier variance: sigma^2 = rate / (1 - rate)
        self.rate = self.sigma**2 / (1.0 + self.sigma**2)
        self.keep = 1.0 - self.rate
        init_randomness(self, generator, seed)
        self.backend = check_choice(backend, "backend", F.BACKENDS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gaussian_dropout(
            x,
            sigma=self.sigma,
            training=self.training,
            generator=self.generator,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        s = f"{rate_repr(self.rate, self.keep)}, sigma={self.sigma:g}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s


class GaussianNoise(nn.Module):
    r"""Additive Gaussian noise :math:`y = x + \text{std}\cdot\varepsilon` in training,
    identity in eval (Keras ``GaussianNoise``; Bishop 1995).

    Shape:
        Input: ``(*)``. Output: same shape.

    Example:
        >>> import torch, droplab as dl
        >>> dl.GaussianNoise(0.1).eval()(torch.ones(2)).tolist()
        [1.0, 1.0]
    """

    def __init__(
        self, std: float, *, generator: torch.Generator | None = None, seed: int | None = None
    ) -> None:
        super().__init__()
        self.std = check_nonneg_float(std, "std")
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gaussian_noise(x, self.std, training=self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"std={self.std:g}"


class AlphaDropout(TorchNames, nn.Module):
    r"""Alpha dropout for self-normalizing (SELU) networks (Klambauer et al. 2017).

    Dropped units take SELU's saturation value :math:`\alpha' \approx -1.7581` and an affine
    map :math:`a(\cdot) + b` restores zero mean and unit variance; see
    :func:`droplab.functional.alpha_dropout`. Identity in eval. ``p`` and ``inplace`` as in
    ``torch.nn.AlphaDropout``.

    Shape:
        Input: ``(*)``. Output: same shape and memory layout.

    Example:
        >>> import torch, droplab as dl
        >>> dl.AlphaDropout(0.1)
        AlphaDropout(rate=0.1, keep=0.9)
    """

    def __init__(
        self,
        rate: float | None = DEFAULT_RATE,
        inplace: bool = False,
        *,
        p: float | None = None,
        keep: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep, p=p)
        self.inplace = check_bool(inplace, "inplace")
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.alpha_dropout(
            x, self.rate, training=self.training, generator=self.generator, inplace=self.inplace
        )

    def extra_repr(self) -> str:
        return rate_repr(self.rate, self.keep) + (", inplace=True" if self.inplace else "")


class FeatureAlphaDropout(TorchNames, nn.Module):
    r"""Channel-wise alpha dropout (``torch.nn.FeatureAlphaDropout``; Klambauer et al. 2017):
    whole channels take SELU's saturation value, then the affine map of
    :class:`AlphaDropout` restores zero mean and unit variance,
    :math:`y_{n,c,\ldots} = a\,(x_{n,c,\ldots} m_{n,c} + \alpha'(1 - m_{n,c})) + b` with
    one :math:`m_{n,c} \sim \mathrm{Bernoulli}(\text{keep})` per (example, channel). See
    :func:`droplab.functional.feature_alpha_dropout`. Identity in eval.

    As for :class:`SpatialDropout`, input is batched ``(N, C, *spatial)`` unless
    ``spatial_dims=k`` is given, which also accepts the unbatched ``(C, *k dims)``.

    Shape:
        Input: ``(N, C, *spatial)``, or ``(C, *spatial)`` with ``spatial_dims``.
        Output: same shape and memory layout.

    Example:
        >>> import torch, droplab as dl
        >>> y = dl.FeatureAlphaDropout(0.5)(torch.zeros(2, 3, 4))
        >>> bool((y == y[:, :, :1]).all())  # one value per channel
        True
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
        return F.feature_alpha_dropout(
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
