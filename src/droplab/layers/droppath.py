"""Stochastic depth: DropPath drops a whole example's residual branch."""

from __future__ import annotations

import torch
from torch import nn

from droplab import functional as F
from droplab._validate import check_bool, check_choice, check_rate
from droplab.layers._seed import init_randomness
from droplab.layers.bernoulli import TorchNames, rate_repr

__all__ = ["DropPath", "drop_path_schedule"]


class DropPath(TorchNames, nn.Module):
    r"""Stochastic depth (Huang et al. 2016): :math:`y_n = x_n m_n/\text{keep}`, one
    Bernoulli(keep) per example (``mode="row"``, timm's ``DropPath``) or one for the whole
    batch (``mode="batch"``, torchvision's ``StochasticDepth``), on a residual branch:
    ``x + drop_path(branch(x))``.

    ``scale_by_keep=False`` leaves kept examples unscaled. Identity in eval. The default
    rate is 0 (timm's ``DropPath()``): rates usually follow depth, set by
    :func:`droplab.drop_path_schedule`.

    Args:
        rate: probability of dropping the branch, default 0 (or ``p``, torchvision's name,
            or ``keep``).
        scale_by_keep: divide kept branches by ``keep`` (default True).
        mode: ``"row"`` (one draw per example) or ``"batch"`` (one draw per call).

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
        p: float | None = None,
        keep: float | None = None,
        scale_by_keep: bool = True,
        mode: str = "row",
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep, p=p, default=0.0)
        self.scale_by_keep = check_bool(scale_by_keep, "scale_by_keep")
        self.mode = check_choice(mode, "mode", F.DROP_PATH_MODES)
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.drop_path(
            x,
            self.rate,
            training=self.training,
            scale_by_keep=self.scale_by_keep,
            mode=self.mode,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        s = rate_repr(self.rate, self.keep)
        if not self.scale_by_keep:
            s += ", scale_by_keep=False"
        return s if self.mode == "row" else s + f", mode={self.mode!r}"


def drop_path_schedule(model: nn.Module, rate: float, *, start: float = 0.0) -> list[float]:
    r"""Set the rates of ``model``'s :class:`DropPath` modules along depth, linearly from
    ``start`` (first module) to ``rate`` (last), the rule of Huang et al. 2016 and timm
    (``[x.item() for x in torch.linspace(0, drop_path_rate, depth)]``); return the rates.

    Modules are taken in registration order (``model.modules()``), the order of the blocks
    in a model built block by block. One module gets ``rate``.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(*[dl.DropPath() for _ in range(5)])
        >>> [round(r, 6) for r in dl.drop_path_schedule(net, 0.2)]
        [0.0, 0.05, 0.1, 0.15, 0.2]
    """
    rate = check_rate(rate, None)[0]
    start = check_rate(start, None)[0]
    paths = [m for m in model.modules() if isinstance(m, DropPath)]
    if not paths:
        raise ValueError(
            f"drop_path_schedule found no DropPath module in {type(model).__name__}; add "
            "dl.DropPath on the residual branches"
        )
    n = len(paths)
    rates = [rate] if n == 1 else [start + (rate - start) * i / (n - 1) for i in range(n)]
    for m, r in zip(paths, rates):
        m.p = r
    return [m.rate for m in paths]
