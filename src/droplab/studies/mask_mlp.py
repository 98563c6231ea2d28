"""K ReLU MLPs stacked along a leading member dim, with per-member dropout multipliers of
three kinds, and a small AdamW trainer with early stopping on validation error.

Used by the ``gaussian`` and ``fixed-count`` studies: ``droplab.train.fit`` has no batched
path for fixed-count dropout (its generic path trains one member at a time, minutes per
member on MNIST-1D), and the gradient measurement (:mod:`droplab.studies.gradient_trace`)
needs the same forward with explicit, per-copy masks.

Multipliers ``u`` (shape ``(K, B, H)``, mean 1 per unit), for rate ``r = P(drop)``:

- ``bernoulli``: ``u = m / (1 - r)``, ``m ~ Bernoulli(1 - r)`` i.i.d.; ``Var u = r/(1-r)``.
- ``gaussian``: ``u = 1 + sigma z``, ``z ~ N(0, 1)``, ``sigma^2 = r/(1-r)`` (the same two
  moments as Bernoulli; Srivastava et al. 2014, sec. 10).
- ``fixed-count``: exactly ``k = round(r H)`` of the ``H`` units dropped, a uniformly random
  subset per example, ``u = m H / (H - k)`` (as :class:`droplab.FixedCountDropout`). The
  marginal of each unit is Bernoulli's (when ``r H`` is an integer) but the mask elements
  are negatively correlated: ``Cov(m_i, m_j) = -Var(m_i) / (H - 1)``.

Forward: ``h_0 = x``; ``h_l = relu(h_{l-1} W_l^T + b_l) * u_l`` for the hidden layers;
logits ``h_{L-1} W_L^T + b_L``. Weights ``W_l`` ``(K, out, in)``, biases ``(K, out)``,
initialized as ``torch.nn.Linear`` (uniform in ``±1/sqrt(in)``) from each member's seed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from droplab import rng

__all__ = ["VARIANTS", "Member", "forward", "init_params", "losses", "multipliers", "train"]

VARIANTS = ("bernoulli", "gaussian", "fixed-count")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def multipliers(variant: str, rates: Tensor, shape: Sequence[int], gen: torch.Generator) -> Tensor:
    """Dropout multipliers of shape ``shape = (N, B, H)`` with mean 1; ``rates`` (N,) in [0, 1)
    is each row's P(drop) (rate 0: all ones)."""
    _check_variant(variant)
    n, _, h = shape
    r = rates.reshape(n, 1, 1).to(torch.float32)
    if variant == "bernoulli":
        keep = 1.0 - r
        return (torch.rand(shape, generator=gen) < keep).float() / keep
    if variant == "gaussian":
        return 1.0 + (r / (1.0 - r)).sqrt() * torch.randn(shape, generator=gen)
    k = torch.tensor([round(float(x) * h) for x in rates.reshape(-1)]).reshape(n, 1, 1)
    scores = torch.rand(shape, generator=gen)  # drop the k lowest scores of each row
    kth = scores.sort(dim=-1).values.gather(-1, (k - 1).clamp(min=0).expand(n, shape[1], 1))
    kept = (scores > kth) | (k == 0)
    return kept.float() * (h / (h - k).float())


def init_params(sizes: Sequence[int], seeds: Sequence[int]) -> list[Tensor]:
    """``[W_1, b_1, ..., W_L, b_L]`` for ``len(seeds)`` members, ``torch.nn.Linear``'s init
    from each member's ``"init"`` stream. ``sizes``: ``(D, H_1, ..., C)``."""
    out = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        bound = 1.0 / math.sqrt(d_in)
        ws, bs = [], []
        for s in seeds:
            g = rng.generator(int(s), "init", i)
            ws.append((torch.rand(d_out, d_in, generator=g) * 2 - 1) * bound)
            bs.append((torch.rand(d_out, generator=g) * 2 - 1) * bound)
        out += [torch.stack(ws), torch.stack(bs)]  # (K, out, in), (K, out)
    return out


def forward(params: Sequence[Tensor], x: Tensor, masks: Sequence[Tensor] | None = None) -> Tensor:
    """Logits ``(N, B, C)`` of ``x`` ``(N, B, D)``; ``masks[l]`` ``(N, B, H_l)`` multiplies
    hidden layer l after its ReLU (None: no dropout, the deterministic net)."""
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
        if i < n_layers - 1:
            h = torch.relu(h)
            if masks is not None:
                h = h * masks[i]
    return h


def losses(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy per member: logits (N, B, C), y (N, B) -> (N,)."""
    n, b, c = logits.shape
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(n * b, c), y.reshape(-1), reduction="none"
    )
    return ce.reshape(n, b).mean(1)


def draw_masks(
    variant: str, rates: Tensor, widths: Sequence[int], n: int, batch: int, gen: torch.Generator
) -> list[Tensor]:
    """One multiplier tensor ``(n, batch, H_l)`` per hidden layer."""
    return [multipliers(variant, rates, (n, batch, h), gen) for h in widths]


@dataclass(frozen=True)
class Member:
    """One member of :func:`train`: seed (init, batch order, masks), dropout variant and
    rate, AdamW learning rate and decoupled weight decay, max-norm ``c`` (None: off)."""

    seed: int
    variant: str
    rate: float
    lr: float
    weight_decay: float = 0.0
    max_norm: float | None = None


def _flat(ds: Any, split: str) -> tuple[Tensor, Tensor]:
    x = getattr(ds, f"x_{split}")
    return x.reshape(x.shape[0], -1).float(), getattr(ds, f"y_{split}")


def _evaluate(params: Sequence[Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Error and NLL of each member's deterministic net on one split: (K,), (K,)."""
    with torch.no_grad():
        k = params[0].shape[0]
        logits = forward(params, x.expand(k, *x.shape))
        nll = losses(logits, y.expand(k, -1))
        err = (logits.argmax(-1) != y).float().mean(1)
    return err, nll


def train(
    ds: Any,
    widths: Sequence[int],
    members: Sequence[Member],
    *,
    max_steps: int,
    eval_steps: int,
    patience_steps: int,
    batch_size: int = 100,
    checkpoints: Sequence[int] = (),
) -> tuple[list[dict[str, float]], dict[int, list[Tensor]]]:
    """Train the members as one stack; each keeps its lowest-validation-error weights
    (ties: lower validation NLL) and stops after ``patience_steps`` without improvement.

    AdamW (betas 0.9, 0.999, eps 1e-8; ``p <- p - lr (m_hat / (sqrt(v_hat) + eps) + wd p)``),
    max-norm on every hidden unit's incoming weights after each step. A stopped member's
    parameters are frozen (its rows still compute). Returns per member the metrics of its
    selected weights (``{train,val,test}_{error,loss}``, ``test_nll``, ``best_step``,
    ``steps``, ``capped``) and the parameters at each step in ``checkpoints`` that was
    trained (step 0: the init), plus key -1: the selected weights.
    """
    for m in members:
        _check_variant(m.variant)
    x_tr, y_tr = _flat(ds, "train")
    x_va, y_va = _flat(ds, "val")
    k, n = len(members), x_tr.shape[0]
    sizes = (x_tr.shape[1], *widths, int(ds.n_outputs))
    params = [p.requires_grad_() for p in init_params(sizes, [m.seed for m in members])]
    lr = torch.tensor([m.lr for m in members])
    wd = torch.tensor([m.weight_decay for m in members])
    cap = torch.tensor([math.inf if m.max_norm is None else m.max_norm for m in members])
    rates = torch.tensor([m.rate for m in members])
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    orders = [rng.generator(m.seed, "order") for m in members]
    mask_gen = rng.generator(members[0].seed, "masks", k)
    groups = {v: torch.tensor([m.variant == v for m in members]) for v in VARIANTS}
    best = [p.detach().clone() for p in params]
    best_err = torch.full((k,), math.inf)
    best_nll = torch.full((k,), math.inf)
    best_step = torch.zeros(k, dtype=torch.long)
    active = torch.ones(k, dtype=torch.bool)
    saved = {0: [p.detach().clone() for p in params]} if 0 in checkpoints else {}
    perms: list[Tensor] = []
    pos, step = n, 0
    while step < max_steps and bool(active.any()):
        if pos + batch_size > n:
            perms = [torch.randperm(n, generator=g) for g in orders]
            pos = 0
        idx = torch.stack([p[pos : pos + batch_size] for p in perms])  # (K, B)
        pos += batch_size
        masks = [torch.ones(k, batch_size, h) for h in widths]
        for v, sel in groups.items():
            if bool(sel.any()):
                for mk, new in zip(
                    masks, draw_masks(v, rates[sel], widths, int(sel.sum()), batch_size, mask_gen)
                ):
                    mk[sel] = new
        loss = losses(forward(params, x_tr[idx], masks), y_tr[idx]).sum()
        grads = torch.autograd.grad(loss, params)
        step += 1
        with torch.no_grad():
            c1, c2 = 1 - 0.9**step, 1 - 0.999**step
            for p, g, a, b in zip(params, grads, m1, m2):
                shape = (k,) + (1,) * (p.dim() - 1)
                on = active.reshape(shape)
                a.mul_(0.9).add_(0.1 * g)
                b.mul_(0.999).add_(0.001 * g * g)
                upd = (a / c1) / ((b / c2).sqrt() + 1e-8) + wd.reshape(shape) * p
                p.sub_(torch.where(on, lr.reshape(shape) * upd, torch.zeros_like(p)))
            for w in params[0:-2:2]:  # hidden layers' incoming weights (K, out, in)
                norm = w.norm(dim=2, keepdim=True).clamp_min(1e-12)
                w.mul_((cap.reshape(k, 1, 1) / norm).clamp(max=1.0))
        if step in checkpoints:
            saved[step] = [p.detach().clone() for p in params]
        if step % eval_steps == 0 or step == max_steps:
            err, nll = _evaluate(params, x_va, y_va)
            better = active & ((err < best_err) | ((err == best_err) & (nll < best_nll)))
            for bp, p in zip(best, params):
                bp[better] = p.detach()[better]
            best_err = torch.where(better, err, best_err)
            best_nll = torch.where(better, nll, best_nll)
            best_step = torch.where(better, torch.tensor(step), best_step)
            active &= (step - best_step) < patience_steps
    saved[-1] = best
    out = []
    splits = {s: _evaluate(best, *_flat(ds, s)) for s in ("train", "val", "test")}
    for j in range(k):
        metrics = {f"{s}_error": float(e[j]) for s, (e, _) in splits.items()}
        metrics.update({f"{s}_loss": float(v[j]) for s, (_, v) in splits.items()})
        metrics["test_nll"] = metrics["test_loss"]
        metrics.update(
            best_step=float(best_step[j]),
            steps=float(step),
            capped=float(bool(active[j]) and step >= max_steps),
        )
        out.append(metrics)
    return out, saved
