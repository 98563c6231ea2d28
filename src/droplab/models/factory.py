"""`ModelSpec` and `build`: MLP, CNN1d (the MNIST-1D paper's CNN) and a small CNN2d.

Every model is an ``nn.Sequential`` with a dropout *slot* after every layer:

- the **input** slot (before the first layer) takes ``input_rate``;
- a **hidden** slot after each hidden layer (after its activation) takes ``hidden_rate``.
  For CNNs the slots after the conv layers but the last are the ``"conv"`` slots and the
  one after the last conv layer (feeding the linear classifier) is the ``"classifier"``
  slot; for an MLP the last hidden slot is the ``"classifier"`` slot.

``placement`` chooses which hidden slots hold a dropout layer: ``"all"``, ``"conv"``
(CNN only), ``"classifier"`` or ``"none"``. A slot that holds a layer always holds it,
even at rate 0, so every member of a study has the same module structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "DROPOUTS", "PLACEMENTS", "ModelSpec", "build", "max_norm_"]

KINDS = ("mlp", "cnn1d", "cnn2d")
ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "identity": nn.Identity,
}
# Elementwise variants work in every slot; spatial ones only on conv feature maps (their
# input slot falls back to elementwise Bernoulli, since dropping the single input channel
# would drop the whole input).
DROPOUTS = ("bernoulli", "gaussian", "fixed-count", "alpha", "spatial", "dropblock")
_ELEMENTWISE = ("bernoulli", "gaussian", "fixed-count", "alpha")
PLACEMENTS = ("all", "conv", "classifier", "none")
SCALINGS = ("inverted", "classic")

# MNIST-1D ConvBase (Greydanus 2020, notebooks/models.py of greydanus/mnist1d): three conv
# layers of 25 channels, kernels 5, 3, 3, stride 2, padding 1, ReLU, then one linear layer.
_DEFAULT_WIDTHS = {"mlp": (256, 256), "cnn1d": (25, 25, 25), "cnn2d": (16, 32)}
_DEFAULT_KERNELS = {"cnn1d": (5, 3, 3), "cnn2d": (3, 3)}


@dataclass(frozen=True)
class ModelSpec:
    """What to build; hashable, so a trial's identity can include it.

    Args:
        kind: ``"mlp"``, ``"cnn1d"`` or ``"cnn2d"``.
        widths: hidden widths (MLP) or conv channels (CNN); None takes the kind's
            default: MLP (256, 256), CNN1d (25, 25, 25), CNN2d (16, 32). An MLP with
            ``widths=()`` is a linear (softmax/linear regression) model with only the
            input dropout slot.
        activation: one of ``ACTIVATIONS``.
        dropout: the dropout variant of the slots, one of ``DROPOUTS``.
        scaling: ``"inverted"`` (divide by keep in training) or ``"classic"`` (multiply by
            keep at evaluation, Srivastava et al. 2014) for Bernoulli variants.
        placement: which hidden slots hold dropout (see module docstring).
        block_size: DropBlock's block size.
        kernel_sizes: conv kernel sizes, ``()`` for the kind's default (CNN1d (5, 3, 3) as
            in the MNIST-1D paper, CNN2d 3 per layer).
        stride, padding: of every conv layer.
    """

    kind: str = "mlp"
    widths: tuple[int, ...] | None = None
    activation: str = "relu"
    dropout: str = "bernoulli"
    scaling: str = "inverted"
    placement: str = "all"
    block_size: int = 3
    kernel_sizes: tuple[int, ...] = ()
    stride: int = 2
    padding: int = 1

    def __post_init__(self) -> None:
        _choice("kind", self.kind, KINDS)
        _choice("activation", self.activation, tuple(ACTIVATIONS))
        _choice("dropout", self.dropout, DROPOUTS)
        _choice("scaling", self.scaling, SCALINGS)
        _choice("placement", self.placement, PLACEMENTS)
        if self.widths is not None and (
            not isinstance(self.widths, tuple)
            or not all(
                isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in self.widths
            )
        ):
            raise ValueError(f"widths must be a tuple of positive ints, got {self.widths!r}")
        if self.kind == "mlp":
            if self.dropout not in _ELEMENTWISE:
                raise ValueError(
                    f"dropout={self.dropout!r} needs conv feature maps; an mlp takes one of "
                    f"{_ELEMENTWISE}"
                )
            if self.placement == "conv":
                raise ValueError(
                    "placement='conv' is for CNNs; an mlp takes 'all', 'classifier' or 'none'"
                )
        else:
            if not self.resolved_widths():
                raise ValueError(
                    f"a {self.kind} needs at least one conv layer, got widths=(); "
                    "use widths=None for the default"
                )
            ks = self.resolved_kernel_sizes()
            if len(ks) != len(self.resolved_widths()):
                raise ValueError(
                    f"kernel_sizes {ks} must have one entry per conv layer "
                    f"(widths {self.resolved_widths()})"
                )
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if self.stride < 1 or self.padding < 0:
            raise ValueError(
                f"need stride >= 1 and padding >= 0, got {self.stride}, {self.padding}"
            )

    def resolved_widths(self) -> tuple[int, ...]:
        return _DEFAULT_WIDTHS[self.kind] if self.widths is None else self.widths

    def resolved_kernel_sizes(self) -> tuple[int, ...]:
        if self.kernel_sizes:
            return self.kernel_sizes
        n = len(self.resolved_widths())
        d = _DEFAULT_KERNELS.get(self.kind, ())
        return d if len(d) == n else (d[0] if d else 3,) * n


def _choice(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_rate(name: str, rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(rate).__name__} {rate!r}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")
    return float(rate)


def dropout_layer(variant: str, rate: float, *, scaling: str = "inverted", block_size: int = 3):
    """One droplab dropout layer of ``variant`` at ``rate`` (P(drop))."""
    import droplab.layers as L  # droplab.layers is imported lazily (models import order)

    if variant == "bernoulli":
        return L.Dropout(rate, scaling=scaling)
    if variant == "gaussian":
        return L.GaussianDropout(rate)
    if variant == "fixed-count":
        return L.FixedCountDropout(rate, scaling=scaling)
    if variant == "alpha":
        return L.AlphaDropout(rate)
    if variant == "spatial":
        return L.SpatialDropout(rate)
    if variant == "dropblock":
        return L.DropBlock(rate, block_size)
    raise ValueError(f"dropout must be one of {DROPOUTS}, got {variant!r}")


def _slot_on(placement: str, is_last: bool, is_cnn: bool) -> bool:
    if placement == "all":
        return True
    if placement == "none":
        return False
    if placement == "conv":
        return is_cnn and not is_last
    return is_last  # "classifier"


def build(
    spec: ModelSpec,
    input_shape: tuple[int, ...],
    n_outputs: int,
    *,
    input_rate: float = 0.0,
    hidden_rate: float = 0.0,
) -> nn.Sequential:
    """Build ``spec`` for inputs of ``input_shape`` (without the batch dim).

    Args:
        spec: the architecture.
        input_shape: ``(D,)`` for an MLP (larger shapes are flattened), ``(L,)`` or
            ``(C, L)`` for CNN1d, ``(C, H, W)`` for CNN2d.
        n_outputs: classes (or 1 for regression).
        input_rate: P(drop) of the input slot (placement ``"none"`` needs 0).
        hidden_rate: P(drop) of the hidden slots that ``spec.placement`` enables.

    Returns:
        ``nn.Sequential`` mapping ``(B, *input_shape)`` to ``(B, n_outputs)``.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or any(s < 1 for s in input_shape):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints, got {input_shape}"
        )
    if not isinstance(n_outputs, int) or n_outputs < 1:
        raise ValueError(f"n_outputs must be a positive int, got {n_outputs!r}")
    input_rate = _check_rate("input_rate", input_rate)
    hidden_rate = _check_rate("hidden_rate", hidden_rate)
    if spec.placement == "none" and (input_rate or hidden_rate):
        raise ValueError(
            f"placement='none' has no dropout slots, but input_rate={input_rate} and "
            f"hidden_rate={hidden_rate}; use placement='all' or rates of 0"
        )
    if spec.kind == "mlp":
        return _mlp(spec, input_shape, n_outputs, input_rate, hidden_rate)
    return _cnn(spec, input_shape, n_outputs, input_rate, hidden_rate)


def _input_variant(spec: ModelSpec) -> str:
    return spec.dropout if spec.dropout in _ELEMENTWISE else "bernoulli"


def _mlp(spec, input_shape, n_outputs, input_rate, hidden_rate) -> nn.Sequential:
    layers: list[nn.Module] = []
    if len(input_shape) > 1:
        layers.append(nn.Flatten())  # (B, *shape) -> (B, D)
    d = math.prod(input_shape)
    if spec.placement != "none":
        layers.append(dropout_layer(_input_variant(spec), input_rate, scaling=spec.scaling))
    widths = spec.resolved_widths()
    for i, w in enumerate(widths):
        layers += [nn.Linear(d, w), ACTIVATIONS[spec.activation]()]
        if _slot_on(spec.placement, i == len(widths) - 1, is_cnn=False):
            layers.append(dropout_layer(spec.dropout, hidden_rate, scaling=spec.scaling))
        d = w
    layers.append(nn.Linear(d, n_outputs))
    return nn.Sequential(*layers)


def _cnn(spec, input_shape, n_outputs, input_rate, hidden_rate) -> nn.Sequential:
    dims = 1 if spec.kind == "cnn1d" else 2
    layers: list[nn.Module] = []
    if dims == 1 and len(input_shape) == 1:
        layers.append(nn.Unflatten(1, (1, input_shape[0])))  # (B, L) -> (B, 1, L)
        shape = (1, input_shape[0])
    elif len(input_shape) == dims + 1:
        shape = input_shape
    else:
        want = "(L,) or (C, L)" if dims == 1 else "(C, H, W)"
        raise ValueError(f"a {spec.kind} takes input_shape {want}, got {input_shape}")
    if spec.placement != "none":
        layers.append(dropout_layer(_input_variant(spec), input_rate, scaling=spec.scaling))
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    c, spatial = shape[0], shape[1:]
    widths, kernels = spec.resolved_widths(), spec.resolved_kernel_sizes()
    for i, (w, k) in enumerate(zip(widths, kernels)):
        layers += [
            conv(c, w, k, stride=spec.stride, padding=spec.padding),
            ACTIVATIONS[spec.activation](),
        ]
        spatial = tuple((s + 2 * spec.padding - k) // spec.stride + 1 for s in spatial)
        if min(spatial) < 1:
            raise ValueError(
                f"input_shape {input_shape} is too small for {len(widths)} conv layers with "
                f"kernels {kernels}, stride {spec.stride}, padding {spec.padding}"
            )
        if _slot_on(spec.placement, i == len(widths) - 1, is_cnn=True):
            layers.append(
                dropout_layer(
                    spec.dropout, hidden_rate, scaling=spec.scaling, block_size=spec.block_size
                )
            )
        c = w
    layers += [nn.Flatten(), nn.Linear(c * math.prod(spatial), n_outputs)]  # (B, C*L) -> (B, O)
    return nn.Sequential(*layers)


@torch.no_grad()
def max_norm_(module: nn.Module, c: float, *, include_output: bool = False) -> nn.Module:
    """Max-norm constraint (Srivastava et al. 2014, sec. 5.1), in place.

    Rescales the incoming weight vector ``w`` of every hidden unit (a row of a Linear
    weight, an output channel's filter of a Conv weight) to ``||w||_2 <= c``:
    ``w <- w * min(1, c / ||w||)``. The output layer is left alone unless
    ``include_output``.
    """
    if not c > 0:
        raise ValueError(f"max-norm c must be > 0, got {c}")
    weighted = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if not include_output:
        weighted = weighted[:-1]
    for m in weighted:
        w = m.weight.flatten(1)  # (out, fan_in)
        norm = w.norm(dim=1, keepdim=True)
        w.mul_(torch.clamp(c / norm.clamp_min(1e-12), max=1.0))
    return module
