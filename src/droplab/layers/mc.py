"""Monte Carlo dropout helpers: ``mc_mode``, ``mc_predict``, ``replace_dropout``, ``is_dropout``.

MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation", ICML) keeps the
dropout masks random at test time and averages several stochastic forward passes; the
spread of the passes is a cheap uncertainty estimate.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import nn

from droplab import functional as F
from droplab import rng
from droplab._validate import DEFAULT_RATE, check_bool, check_positive_int, check_rate
from droplab.layers._seed import init_randomness
from droplab.layers.bernoulli import Dropout, FixedCountDropout, TorchNames, rate_repr
from droplab.layers.concrete import ConcreteDropout
from droplab.layers.dropconnect import DropConnect
from droplab.layers.droppath import DropPath
from droplab.layers.gaussian import (
    AlphaDropout,
    FeatureAlphaDropout,
    GaussianDropout,
    GaussianNoise,
)
from droplab.layers.sequence import EmbeddingDropout, LockedDropout
from droplab.layers.structured import DropBlock, SpatialDropout

__all__ = [
    "DROPOUT_TYPES",
    "ConsistentDropout",
    "is_dropout",
    "mc_mode",
    "mc_predict",
    "replace_dropout",
    "restore_dropout",
]


class ConsistentDropout(TorchNames, nn.Module):
    r"""Dropout whose MC-dropout masks are fixed: the k-th pass of every :func:`mc_mode`
    block (every :func:`mc_predict` call) uses the same mask, for every batch, so MC
    predictions are reproducible and comparable across batches (Baal's
    ``ConsistentMCDropout``).

    In training (outside :func:`mc_mode`) it is :class:`Dropout`: a fresh
    Bernoulli(keep) mask per unit, :math:`y = x \odot m/\text{keep}`. Under MC sampling
    pass :math:`k` uses a mask :math:`m^{(k)}` over the features (dims 1 and up), shared
    by all examples of the batch and derived from ``(base, k)``; ``base`` is drawn once,
    at the first MC pass, from ``generator`` (or the global RNG), and :meth:`reset` draws
    a new set of masks at the next MC pass. Identity in eval.

    Shape:
        Input: ``(N, *)``. Output: same shape.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), dl.ConsistentDropout(0.5))
        >>> x = torch.randn(5, 3)
        >>> a = dl.mc_predict(net, x, samples=4)
        >>> b = dl.mc_predict(net, x[:2], samples=4)
        >>> torch.equal(a[:, :2] == 0, b == 0)  # the same masks for the same passes
        True
    """

    shares_noise_across_batch = True  # one mask per MC pass for the whole batch

    def __init__(
        self,
        rate: float | None = DEFAULT_RATE,
        *,
        p: float | None = None,
        keep: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep, p=p)
        init_randomness(self, generator, seed)
        self.mc_sampling = False  # set by mc_mode
        self._base: int | None = None  # the masks' seed, drawn at the first MC pass
        self._pass = 0

    def reset(self) -> None:
        """Forget the MC masks: the next MC pass draws a new set."""
        self._base = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.mc_sampling and self.training):
            return F.dropout(x, self.rate, training=self.training, generator=self.generator)
        if self._base is None:
            self._base = F._kernel_seed(self.generator)
        g = torch.Generator(device=x.device)
        g.manual_seed(rng.derive(self._base, "consistent", self._pass))
        self._pass += 1
        return F.dropout(x, self.rate, broadcast_dims=0, generator=g)  # (1, *features) mask

    def extra_repr(self) -> str:
        return rate_repr(self.rate, self.keep)


# torch's own dropout layers (Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout)
# all derive from _DropoutNd.
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.dropout._DropoutNd,
    Dropout,
    ConsistentDropout,
    FixedCountDropout,
    GaussianDropout,
    GaussianNoise,
    AlphaDropout,
    FeatureAlphaDropout,
    SpatialDropout,
    DropBlock,
    DropPath,
    DropConnect,
    LockedDropout,
    EmbeddingDropout,
    ConcreteDropout,
)


def is_dropout(module: nn.Module) -> bool:
    """True for droplab's dropout-like layers and torch's dropout layers (subclasses too)."""
    return isinstance(module, DROPOUT_TYPES)


def _is_active(module: nn.Module) -> bool:
    """Whether a dropout-like module draws noise at all: rate (torch's ``p``) or
    GaussianNoise's ``std`` above 0. A module without either counts as active."""
    for name in ("rate", "p", "std"):
        value = getattr(module, name, None)
        if isinstance(value, (int, float)):
            return value > 0
    return True


def _sampled_modules(model: nn.Module, last_layer: bool) -> list[nn.Module]:
    """The dropout-like modules that MC sampling turns on (all, or the last active one);
    a clear error where none would draw noise."""
    dropouts = [m for m in model.modules() if is_dropout(m)]
    if not dropouts:
        raise ValueError(
            f"mc_mode found no dropout module in {type(model).__name__}; MC dropout needs "
            "dropout layers (droplab's or torch.nn.Dropout-like) in the model, e.g. add "
            "dl.Dropout layers or use dl.replace_dropout"
        )
    active = [m for m in dropouts if _is_active(m)]
    if not active:
        raise ValueError(
            f"mc_mode found {len(dropouts)} dropout module(s) in {type(model).__name__}, all "
            "with rate 0, so every MC sample would be the same; give a dropout layer a rate "
            "> 0 (e.g. layer.p = 0.1) or use dl.replace_dropout with a factory that sets one"
        )
    return active[-1:] if last_layer else dropouts


@contextlib.contextmanager
def mc_mode(model: nn.Module, *, last_layer: bool = False) -> Iterator[nn.Module]:
    """Within the block, every dropout-like module is in training mode and everything else
    (batch norm included) in eval mode; on exit every module's mode is restored.

    ``last_layer=True`` samples only the last dropout module with a rate > 0 (in
    ``model.modules()`` order, the order of registration), as in "last-layer" MC dropout
    (Baal, torch-uncertainty); the others stay in eval.

    Raises:
        ValueError: the model contains no dropout-like module, or only ones with rate 0
            (MC sampling would return identical samples).

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), dl.Dropout(0.5))
        >>> with dl.mc_mode(net):
        ...     net[1].training, net[0].training
        (True, False)
    """
    check_bool(last_layer, "last_layer")
    sampled = _sampled_modules(model, last_layer)
    modules = list(model.modules())
    was_training = [m.training for m in modules]
    consistent = [m for m in modules if isinstance(m, ConsistentDropout)]
    model.eval()
    for m in sampled:
        m.training = True  # only the flag of this module; its children stay in eval
    for m in consistent:
        m.mc_sampling, m._pass = True, 0  # pass k of this block uses mask k
    try:
        yield model
    finally:
        for m, flag in zip(modules, was_training):
            m.training = flag
        for m in consistent:
            m.mc_sampling = False


def _shares_noise_across_batch(module: nn.Module) -> bool:
    """Whether one noise draw of ``module`` is shared by all examples of a batch, so that
    stacking T copies of the batch would not give T independent samples."""
    if isinstance(module, (DropConnect, EmbeddingDropout)):
        return True  # one weight mask per call
    if isinstance(module, DropPath):
        return module.mode == "batch"
    if isinstance(module, LockedDropout):
        return not module.batch_first  # (T, N, *): dim 0 is time, not the batch
    if isinstance(module, Dropout):
        return 0 in module.broadcast_dims  # one mask for every example
    return bool(getattr(module, "shares_noise_across_batch", False))


def mc_predict(
    model: nn.Module,
    x: torch.Tensor,
    samples: int = 30,
    *,
    last_layer: bool = False,
    vectorize: bool | int = False,
) -> torch.Tensor:
    """Stack ``samples`` stochastic forward passes of ``model`` in :func:`mc_mode`.

    Runs without gradients. The randomness comes from the layers' own ``generator``s (or
    torch's global RNG), so seed those for reproducible samples.

    ``last_layer=True``: only the last dropout module is sampled (see :func:`mc_mode`).
    ``vectorize=True`` runs the samples as one batch, ``x`` repeated along dim 0
    (``(samples * N, ...)``), an int runs that many samples per batch (to bound memory):
    the same distribution as separate passes for a model that treats examples
    independently in eval, but other random numbers. Models whose noise is shared by the
    whole batch (DropConnect, ``DropPath(mode="batch")``, a mask broadcast over dim 0)
    cannot be vectorized and raise.

    Shape:
        Input: whatever ``model`` takes (``(N, *)`` with ``vectorize``).
        Output: ``(samples, *model(x).shape)``.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), dl.Dropout(0.5))
        >>> dl.mc_predict(net, torch.ones(4, 3), samples=8).shape
        torch.Size([8, 4, 2])
        >>> dl.mc_predict(net, torch.ones(4, 3), samples=8, vectorize=True).shape
        torch.Size([8, 4, 2])
    """
    samples = check_positive_int(samples, "samples")
    if vectorize is True:
        chunk = samples
    elif vectorize is False:
        chunk = 0
    else:
        chunk = check_positive_int(vectorize, "vectorize")
    with mc_mode(model, last_layer=last_layer), torch.no_grad():
        if not chunk:
            return torch.stack([model(x) for _ in range(samples)])  # (samples, *out)
        shared = [m for m in model.modules() if m.training and _shares_noise_across_batch(m)]
        if shared:
            raise ValueError(
                f"mc_predict(vectorize=...) needs noise drawn per example, but "
                f"{type(shared[0]).__name__} shares one draw across the batch; use "
                "vectorize=False"
            )
        if not isinstance(x, torch.Tensor) or x.ndim == 0:
            raise ValueError("mc_predict(vectorize=...) needs x of shape (N, *), a batch tensor")
        n, out = x.shape[0], []
        for start in range(0, samples, chunk):
            t = min(chunk, samples - start)
            y = model(x.repeat(t, *([1] * (x.ndim - 1))))  # (t * N, *out)
            out.append(y.reshape(t, n, *y.shape[1:]))  # (t, N, *out)
        return torch.cat(out)  # (samples, N, *out)


# torch's dropout layers and what replace_dropout puts in their place by default
_DEFAULT_FACTORIES: dict[type[nn.Module], Callable[[nn.Module], nn.Module]] = {
    nn.Dropout: lambda m: Dropout(m.p, m.inplace),
    nn.Dropout1d: lambda m: SpatialDropout(m.p, m.inplace, spatial_dims=1),
    nn.Dropout2d: lambda m: SpatialDropout(m.p, m.inplace),  # (N, C, L) for 3-D, as torch
    nn.Dropout3d: lambda m: SpatialDropout(m.p, m.inplace, spatial_dims=3),
    nn.AlphaDropout: lambda m: AlphaDropout(m.p, m.inplace),
    nn.FeatureAlphaDropout: lambda m: FeatureAlphaDropout(m.p, m.inplace),
}

# model -> [(parent, name, replaced module)] of its replace_dropout calls, for the undo
_REPLACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def replace_dropout(
    model: nn.Module,
    factory: Callable[[float], nn.Module] | None = None,
    *,
    inplace: bool = True,
) -> nn.Module:
    """Swap torch's dropout layers in ``model`` for droplab's; return the model.

    Without ``factory`` every torch dropout layer gets its droplab counterpart with the
    same rate and ``inplace`` flag: ``nn.Dropout`` -> :class:`Dropout`,
    ``nn.Dropout1d``/``2d``/``3d`` -> :class:`SpatialDropout` (``spatial_dims=1``, any,
    ``3``, so the inputs torch accepts are read the same way), ``nn.AlphaDropout`` ->
    :class:`AlphaDropout`, ``nn.FeatureAlphaDropout`` -> :class:`FeatureAlphaDropout`.
    With ``factory``, only element-wise ``nn.Dropout`` (and subclasses) is swapped, for
    ``factory(rate)``, ``rate`` being the replaced layer's ``p``. Each new module gets the
    replaced one's training flag.

    ``inplace=False`` leaves ``model`` untouched and returns a modified deep copy.
    :func:`restore_dropout` undoes the replacement on the returned model. A bare dropout
    layer passed as ``model`` is replaced and returned. A ``UserWarning`` says when
    nothing was replaced.

    Example:
        >>> import torch, droplab as dl
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.2))
        >>> dl.replace_dropout(net, lambda rate: dl.GaussianDropout(rate))[1]
        GaussianDropout(rate=0.2, keep=0.8, sigma=0.5)
        >>> dl.restore_dropout(net)[1]
        Dropout(p=0.2, inplace=False)
    """
    check_bool(inplace, "inplace")
    if factory is not None and not callable(factory):
        raise TypeError(
            f"factory must be a callable rate -> nn.Module or None, got {type(factory).__name__}"
        )

    def make_for(old: nn.Module) -> nn.Module | None:
        if factory is not None:
            if not isinstance(old, nn.Dropout):
                return None
            new = factory(old.p)
            if not isinstance(new, nn.Module):
                raise TypeError(
                    f"factory must return an nn.Module, got {type(new).__name__} for rate={old.p}"
                )
        else:
            make = next((f for t, f in _DEFAULT_FACTORIES.items() if type(old) is t), None) or next(
                (f for t, f in _DEFAULT_FACTORIES.items() if isinstance(old, t)), None
            )
            if make is None:
                return None
            new = make(old)
        return new.train(old.training)

    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, nn.modules.dropout._DropoutNd):
        new = make_for(model)
        if new is None:
            warnings.warn(
                f"replace_dropout: {type(model).__name__} is not replaced by this factory",
                UserWarning,
                stacklevel=2,
            )
            return model
        return new
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.modules.dropout._DropoutNd)
    ]
    done = []
    for parent, name, child in targets:
        new = make_for(child)
        if new is not None:
            setattr(parent, name, new)
            done.append((parent, name, child))
    if not done:
        warnings.warn(
            f"replace_dropout found no torch dropout layer to replace in "
            f"{type(model).__name__}; the model is returned unchanged",
            UserWarning,
            stacklevel=2,
        )
    _REPLACED.setdefault(model, []).extend(done)
    return model


def restore_dropout(model: nn.Module) -> nn.Module:
    """Undo every :func:`replace_dropout` on ``model``: put the original torch dropout
    layers back (the very modules that were replaced); return the model.

    Raises:
        ValueError: ``replace_dropout`` never replaced anything in ``model``.
    """
    done = _REPLACED.pop(model, None)
    if not done:
        raise ValueError(
            f"restore_dropout: nothing to restore in {type(model).__name__}; pass the model "
            "that replace_dropout returned"
        )
    for parent, name, old in reversed(done):
        setattr(parent, name, old)
    return model
