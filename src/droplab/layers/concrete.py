"""Concrete dropout (Gal, Hron & Kendall 2017): a dropout rate learned by gradient descent."""

from __future__ import annotations

import math

import torch
from torch import nn

from droplab._validate import check_nonneg_float, check_probability
from droplab.functional import _uniform
from droplab.layers._seed import init_randomness
from droplab.layers.bernoulli import rate_repr

__all__ = ["ConcreteDropout"]


class ConcreteDropout(nn.Module):
    r"""Concrete dropout (Gal, Hron & Kendall 2017, "Concrete Dropout", NeurIPS): dropout
    on the input of the wrapped layer whose rate :math:`p` is a parameter, learned through
    the concrete (relaxed Bernoulli) mask

    .. math::
        \tilde z = \sigma\!\left(\frac{\log p - \log(1-p) + \log u - \log(1-u)}{t}\right),
        \quad u \sim U(0, 1),\qquad y = \text{module}\!\left(\frac{x \odot (1-\tilde z)}
        {1-p}\right),

    :math:`\tilde z` the relaxed "dropped" indicator at temperature ``t`` (0.1 in the
    paper). Add :meth:`regularization` to the loss: the paper's (eq. 3)

    .. math::
        \text{weight\_regularizer}\,\frac{\lVert W\rVert^2}{1-p}
        + \text{dropout\_regularizer}\cdot K\,\bigl(p\log p + (1-p)\log(1-p)\bigr),

    with :math:`W` the wrapped layer's parameters and :math:`K` the input's feature count;
    the paper sets ``weight_regularizer`` :math:`= \ell^2/(\tau N)` and
    ``dropout_regularizer`` :math:`= 2/(\tau N)` for ``N`` training examples, so the learned
    rate falls as data grow. Eval: the wrapped layer on ``x`` (no dropout).

    Args:
        module: the layer whose input is dropped (``nn.Linear``, a conv, ...).
        init_rate: the initial rate, in (0, 1).
        temperature: ``t`` of the relaxation, > 0.
        weight_regularizer, dropout_regularizer: the coefficients above, >= 0.

    Shape:
        Input: what ``module`` takes, features along dim 1. Output: what it returns.

    Example:
        >>> import torch, droplab as dl
        >>> layer = dl.ConcreteDropout(torch.nn.Linear(4, 2), init_rate=0.2)
        >>> layer(torch.ones(3, 4)).shape, round(layer.rate, 3)
        (torch.Size([3, 2]), 0.2)
    """

    def __init__(
        self,
        module: nn.Module,
        init_rate: float = 0.1,
        *,
        temperature: float = 0.1,
        weight_regularizer: float = 1e-6,
        dropout_regularizer: float = 1e-5,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"ConcreteDropout wraps an nn.Module, got {type(module).__name__}")
        p = check_probability(init_rate, "init_rate", allow_one=False)
        if p == 0.0:
            raise ValueError(f"init_rate must be in (0, 1), got {init_rate!r}")
        self.module = module
        self.p_logit = nn.Parameter(torch.tensor(math.log(p) - math.log1p(-p)))
        self.temperature = check_nonneg_float(temperature, "temperature")
        if self.temperature == 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.weight_regularizer = check_nonneg_float(weight_regularizer, "weight_regularizer")
        self.dropout_regularizer = check_nonneg_float(dropout_regularizer, "dropout_regularizer")
        init_randomness(self, generator, seed)
        self._features = 0  # K, the input's feature count, seen at the last forward

    @property
    def rate(self) -> float:
        """The current learned rate :math:`p = \\sigma(\\text{p\\_logit})`."""
        return torch.sigmoid(self.p_logit.detach()).item()

    @property
    def keep(self) -> float:
        return 1.0 - self.rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._features = x.shape[1] if x.ndim > 1 else x.shape[0]
        if not self.training:
            return self.module(x)
        eps = 1e-7
        p = torch.sigmoid(self.p_logit).to(x.dtype)
        u = _uniform(x.shape, x, self.generator).to(x.dtype).clamp(eps, 1 - eps)
        z = torch.sigmoid(
            (torch.log(p) - torch.log1p(-p) + torch.log(u) - torch.log1p(-u)) / self.temperature
        )  # relaxed "dropped", x's shape
        return self.module(x * (1 - z) / (1 - p))

    def regularization(self) -> torch.Tensor:
        """The paper's regularizer for this layer (eq. 3), a scalar to add to the loss."""
        p = torch.sigmoid(self.p_logit)
        squares = sum((w**2).sum() for w in self.module.parameters())
        weight = self.weight_regularizer * squares / (1 - p)
        entropy = p * torch.log(p) + (1 - p) * torch.log1p(-p)  # -H(p)
        return weight + self.dropout_regularizer * self._features * entropy

    def extra_repr(self) -> str:
        return f"{rate_repr(self.rate, self.keep)}, temperature={self.temperature:g}"
