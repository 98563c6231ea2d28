"""What the slack study measures on one trained MLP: how unequal its hidden units are, how
many of them contribute nothing, and how much of its accuracy survives pruning.

The net is a ``Sequential`` MLP (``droplab.models``): dropout, Linear, activation, ...,
Linear. Hidden unit j of hidden layer l has incoming weights ``W_l[j, :]`` (row j of the
layer's Linear) and outgoing weights ``W_{l+1}[:, j]`` (column j of the next Linear); its
**importance** is the product of their norms,

    p_j = ||W_l[j, :]||_2 * ||W_{l+1}[:, j]||_2,

the quantity whose spread dropout's induced regularizer penalizes: for a net with one
hidden layer trained with dropout, Mianjy, Arora & Vidal (2018, "On the implicit bias of
dropout", ICML) show the regularizer is ``(rate/keep) sum_j ||u_j||^2 ||v_j||^2`` (for
whitened inputs), minimized at fixed ``sum_j p_j`` when every ``p_j`` is equal: dropout
*equalizes* the units. For any activation, dropout on the last hidden layer under the
squared loss adds exactly the variance of the masked sum, ``(rate/keep) sum_j
||W_{l+1}[:, j]||^2 E_x[h_j(x)^2]`` (the data-dependent form of Arora, Bartlett, Mianjy &
Srebro 2021, "Dropout: explicit forms and capacity control", ICML), so the **activation
importance** ``a_j = rms_x(h_j(x)) * ||W_{l+1}[:, j]||`` is measured too: it equals
``p_j`` for a linear layer on whitened inputs, and it is 0 for a dead ReLU, whose weights
``p_j`` does not see. The spread statistic is the coefficient of variation over the
units of a layer, ``CV_l = std_j(p_j) / mean_j(p_j)`` (population std), averaged over the
hidden layers; it is unit-free and invariant to rescaling the whole net.

Functional measurements (on inputs ``x``, labels ``y``, no retraining):

- magnitude pruning: zero the fraction ``f`` smallest ``|w|`` of every Linear;
- unit ablation: zero the outgoing weights of the fraction ``f`` of each hidden layer's
  units, either the least important (smallest ``p_j``) or a uniformly random set;
- each accuracy is **normalized to the net's own unpruned accuracy** above chance,
  ``retention(f) = (acc_f - c) / (acc_0 - c)`` with chance ``c = 1 / n_classes``, so a
  net that is less accurate to begin with is not counted as less robust.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "ABLATE_FRACTIONS",
    "PRUNE_FRACTIONS",
    "QUANTILES",
    "ablate_units_",
    "accuracy",
    "activation_importance",
    "coadaptation",
    "dead_units",
    "hidden_activations",
    "linears",
    "measure",
    "prune_",
    "retention",
    "slack_units",
    "unit_cv",
    "unit_importance",
]

PRUNE_FRACTIONS = (0.5, 0.7, 0.8, 0.9, 0.95)
ABLATE_FRACTIONS = (0.25, 0.5, 0.75, 0.9)
#: quantiles of p_j / mean_l(p) stored per net (the importance profile figure)
QUANTILES = tuple(np.linspace(0.0, 1.0, 21))
#: a unit whose importance is below this share of its layer's mean contributes ~nothing
SLACK_SHARE = 0.01
RANDOM_DRAWS = 8


def _check_fraction(name: str, f: float) -> None:
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {f!r}")


def linears(net: nn.Module) -> list[nn.Linear]:
    """The Linear layers of ``net`` in order; at least two (one hidden layer) are needed."""
    out = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if len(out) < 2:
        raise ValueError(f"net must be an MLP with a hidden layer (>= 2 Linear), got {len(out)}")
    return out


def unit_importance(net: nn.Module) -> list[torch.Tensor]:
    """Per hidden layer l, ``p`` of shape (H_l,): ``||W_l[j, :]|| * ||W_{l+1}[:, j]||``."""
    lins = linears(net)
    return [
        (a.weight.detach().norm(dim=1) * b.weight.detach().norm(dim=0)).double()
        for a, b in itertools.pairwise(lins)
    ]


def activation_importance(net: nn.Module, acts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per hidden layer l, ``a`` of shape (H_l,): ``rms_x(h_j) * ||W_{l+1}[:, j]||`` with
    ``acts`` the hidden activations (n, H_l) of :func:`hidden_activations`."""
    lins = linears(net)
    if len(acts) != len(lins) - 1:
        raise ValueError(
            f"acts must hold one (n, H) per hidden layer ({len(lins) - 1}), got {len(acts)}"
        )
    return [
        (h.double().pow(2).mean(0).sqrt() * nxt.weight.detach().double().norm(dim=0))
        for h, nxt in zip(acts, lins[1:])
    ]


def unit_cv(p: Sequence[torch.Tensor]) -> float:
    """Mean over layers of ``std(p_l) / mean(p_l)`` (population std); NaN if a layer is all 0."""
    vals = []
    for q in p:
        m = float(q.mean())
        vals.append(float(q.std(unbiased=False)) / m if m > 0 else math.nan)
    return float(np.mean(vals))


def hidden_activations(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every activation layer of a Sequential MLP in eval mode: ``(n, H_l)``."""
    acts, h = [], x
    with torch.no_grad():
        for layer in net.children():
            h = layer(h)
            if isinstance(layer, (nn.ReLU, nn.Tanh, nn.GELU, nn.ELU, nn.SELU, nn.Sigmoid)):
                acts.append(h)
    return acts


def dead_units(acts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, a bool (H_l,): the unit outputs <= 0 on every input (a dead ReLU)."""
    return [(a <= 0).all(0) for a in acts]


def slack_units(p: Sequence[torch.Tensor], dead: Sequence[torch.Tensor]) -> float:
    """Fraction of hidden units (all layers) that contribute nothing: dead on every input,
    or importance below :data:`SLACK_SHARE` of their layer's mean importance."""
    if len(p) != len(dead):
        raise ValueError(f"p and dead must list the same layers, got {len(p)} and {len(dead)}")
    slack = sum(int(((q < SLACK_SHARE * q.mean()) | d.cpu()).sum()) for q, d in zip(p, dead))
    return slack / sum(q.numel() for q in p)


def coadaptation(acts: Sequence[torch.Tensor]) -> float:
    """Mean over layers of the mean |Pearson correlation| over pairs of non-constant units.

    For a layer's activations ``A`` (n, H): standardize each live column, ``R = Z^T Z / n``
    (H', H'), and average ``|R_ij|`` over ``i < j``.
    """
    vals = []
    for a in acts:
        a = a.double()
        a = a[:, a.std(0) > 1e-8]  # (n, H') live units
        if a.shape[1] < 2:
            continue
        z = (a - a.mean(0)) / a.std(0, unbiased=False)
        r = (z.T @ z) / a.shape[0]  # (H', H')
        iu = torch.triu_indices(r.shape[0], r.shape[1], offset=1)
        vals.append(float(r[iu[0], iu[1]].abs().mean()))
    return float(np.mean(vals)) if vals else math.nan


@torch.no_grad()
def prune_(net: nn.Module, fraction: float) -> None:
    """Zero the ``fraction`` smallest-|w| weights of every Linear (in place; ties at the
    cut are zeroed too)."""
    _check_fraction("fraction", fraction)
    for lin in linears(net):
        w = lin.weight
        k = round(fraction * w.numel())
        if k == 0:
            continue
        cut = w.abs().flatten().kthvalue(k).values
        w.masked_fill_(w.abs() <= cut, 0.0)


@torch.no_grad()
def ablate_units_(
    net: nn.Module,
    fraction: float,
    *,
    order: str = "least",
    generator: np.random.Generator | None = None,
) -> None:
    """Remove the ``fraction`` of each hidden layer's units (in place) by zeroing their
    outgoing weights ``W_{l+1}[:, j]``: the least important (``order="least"``, by
    :func:`unit_importance` before any removal) or a random set (``order="random"``,
    drawn from ``generator``)."""
    _check_fraction("fraction", fraction)
    if order not in ("least", "random"):
        raise ValueError(f"order must be 'least' or 'random', got {order!r}")
    if order == "random" and generator is None:
        raise ValueError("order='random' needs a generator (numpy.random.Generator)")
    lins = linears(net)
    p = unit_importance(net)
    for q, nxt in zip(p, lins[1:]):
        k = round(fraction * q.numel())
        if k == 0:
            continue
        if order == "least":
            idx = torch.argsort(q, stable=True)[:k]
        else:
            idx = torch.as_tensor(generator.choice(q.numel(), size=k, replace=False))
        nxt.weight[:, idx] = 0.0


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``net`` (eval mode) on ``x`` (n, ...), ``y`` (n,)."""
    with torch.no_grad():
        return float((net(x).argmax(-1) == y).float().mean())


def retention(acc: float, acc0: float, chance: float) -> float:
    """``(acc - chance) / (acc0 - chance)``: the share of the unpruned net's above-chance
    accuracy that is left; NaN when the unpruned net is not above chance."""
    if not acc0 > chance:
        return math.nan
    return (acc - chance) / (acc0 - chance)


def measure(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every measurement of one trained net (eval mode, restored afterwards).

    Args:
        net: a Sequential MLP.
        x, y: inputs (n, D) and labels (n,) (the test split).
        n_classes: for chance level ``1 / n_classes``.
        seed: seeds the random unit ablation (:data:`RANDOM_DRAWS` draws per fraction).

    Returns:
        ``(metrics, curves)``. Metrics: ``unit_cv``, ``unit_cv_act`` (the CV of
        :func:`activation_importance`), ``slack_units``, ``dead_units``,
        ``frac_small_rel`` (weights below 0.1 of their layer's rms), ``coadapt``,
        ``acc0``, ``prune_ret_<f%>``, ``least_ret_<f%>``, ``random_ret_<f%>`` per fraction
        and their means ``prune_ret``, ``least_ret``, ``random_ret`` (retentions, 0-1).
        Curves: ``importance_quantiles``, quantiles of ``p_j / mean_l(p)`` over all units.
    """
    net = net.eval()
    chance = 1.0 / n_classes
    p = unit_importance(net)
    acts = hidden_activations(net, x)
    dead = dead_units(acts)
    ws = [lin.weight.detach() for lin in linears(net)]
    small = sum(int((w.abs() < 0.1 * w.pow(2).mean().sqrt()).sum()) for w in ws)
    acc0 = accuracy(net, x, y)
    metrics = {
        "unit_cv": unit_cv(p),
        "unit_cv_act": unit_cv(activation_importance(net, acts)),
        "slack_units": slack_units(p, dead),
        "dead_units": sum(int(d.sum()) for d in dead) / sum(d.numel() for d in dead),
        "frac_small_rel": small / sum(w.numel() for w in ws),
        "coadapt": coadaptation(acts),
        "acc0": acc0,
    }
    state = {k: v.clone() for k, v in net.state_dict().items()}
    g = np.random.default_rng(seed % 2**32)

    def after(edit, f: float, **kw) -> float:
        edit(net, f, **kw)
        acc = accuracy(net, x, y)
        net.load_state_dict(state)
        return retention(acc, acc0, chance)

    for f in PRUNE_FRACTIONS:
        metrics[f"prune_ret_{round(f * 100)}"] = after(prune_, f)
    for f in ABLATE_FRACTIONS:
        metrics[f"least_ret_{round(f * 100)}"] = after(ablate_units_, f)
        draws = [after(ablate_units_, f, order="random", generator=g) for _ in range(RANDOM_DRAWS)]
        metrics[f"random_ret_{round(f * 100)}"] = float(np.mean(draws))
    for name, fractions in (
        ("prune", PRUNE_FRACTIONS),
        ("least", ABLATE_FRACTIONS),
        ("random", ABLATE_FRACTIONS),
    ):
        metrics[f"{name}_ret"] = float(
            np.mean([metrics[f"{name}_ret_{round(f * 100)}"] for f in fractions])
        )
    pooled = torch.cat([q / q.mean() for q in p]).numpy()
    curves = {"importance_quantiles": np.quantile(pooled, QUANTILES).tolist()}
    return metrics, curves
