"""Monte Carlo dropout helpers: ``mc_mode``, ``mc_predict``, ``replace_dropout``, ``is_dropout``.

MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation", ICML) keeps the
dropout masks random at test time and averages several stochastic forward passes; the
spread of the passes is a cheap uncertainty estimate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from droplab._validate import check_positive_int
from droplab.layers.bernoulli import Dropout, FixedCountDropout
from droplab.layers.dropconnect import DropConnect
from droplab.layers.droppath import DropPath
from droplab.layers.gaussian import AlphaDropout, GaussianDropout, GaussianNoise
from droplab.layers.structured import DropBlock, SpatialDropout

__all__ = ["DROPOUT_TYPES", "is_dropout", "mc_mode", "mc_predict", "replace_dropout"]

# torch's own dropout layers (Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout)
# all derive from _DropoutNd.
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.dropout._DropoutNd,
    Dropout,
    FixedCountDropout,
    GaussianDropout,
    GaussianNoise,
    AlphaDropout,
    SpatialDropout,
    DropBlock,
    DropPath,
    DropConnect,
)


def is_dropout(module: nn.Module) -> bool:
    """True for droplab's dropout-like layers and torch's dropout layers (subclasses too)."""
    return isinstance(module, DROPOUT_TYPES)


@contextlib.contextmanager
def mc_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every dropout-like module is in training mode and everything else
    (batch norm included) in eval mode; on exit every module's mode is restored.

    Raises:
        ValueError: the model contains no dropout-like module (MC sampling would return
            identical samples).

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), dl.Dropout(0.5))
        >>> with dl.mc_mode(net):
        ...     net[1].training, net[0].training
        (True, False)
    """
    modules = list(model.modules())
    dropouts = [m for m in modules if is_dropout(m)]
    if not dropouts:
        raise ValueError(
            f"mc_mode found no dropout module in {type(model).__name__}; MC dropout needs "
            "dropout layers (droplab's or torch.nn.Dropout-like) in the model, e.g. add "
            "dl.Dropout layers or use dl.replace_dropout"
        )
    was_training = [m.training for m in modules]
    model.eval()
    for m in dropouts:
        m.training = True  # only the flag of this module; its children stay in eval
    try:
        yield model
    finally:
        for m, flag in zip(modules, was_training):
            m.training = flag


def mc_predict(model: nn.Module, x: torch.Tensor, samples: int = 30) -> torch.Tensor:
    """Stack ``samples`` stochastic forward passes of ``model`` in :func:`mc_mode`.

    Runs without gradients. The randomness comes from the layers' own ``generator``s (or
    torch's global RNG), so seed those for reproducible samples.

    Shape:
        Input: whatever ``model`` takes. Output: ``(samples, *model(x).shape)``.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), dl.Dropout(0.5))
        >>> dl.mc_predict(net, torch.ones(4, 3), samples=8).shape
        torch.Size([8, 4, 2])
    """
    samples = check_positive_int(samples, "samples")
    with mc_mode(model), torch.no_grad():
        return torch.stack([model(x) for _ in range(samples)])  # (samples, *out)


def replace_dropout(model: nn.Module, factory: Callable[[float], nn.Module]) -> nn.Module:
    """Swap every ``torch.nn.Dropout`` in ``model`` for ``factory(rate)``; return the model.

    ``rate`` is the replaced layer's ``p``; the new module gets its training flag. Only
    element-wise ``nn.Dropout`` (and subclasses) is swapped; ``Dropout2d`` and friends are
    left alone. A bare ``nn.Dropout`` passed as ``model`` is replaced and returned.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.2))
        >>> dl.replace_dropout(net, lambda rate: dl.GaussianDropout(rate))[1]
        GaussianDropout(rate=0.2, keep=0.8, sigma=0.5)
    """

    def make(old: nn.Dropout) -> nn.Module:
        new = factory(old.p)
        if not isinstance(new, nn.Module):
            raise TypeError(
                f"factory must return an nn.Module, got {type(new).__name__} for rate={old.p}"
            )
        return new.train(old.training)

    if isinstance(model, nn.Dropout):
        return make(model)
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Dropout)
    ]
    for parent, name, child in targets:
        setattr(parent, name, make(child))
    return model
