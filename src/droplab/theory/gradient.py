"""Monte Carlo decomposition of the dropout gradient: clean part, bias, noise.

For a model with dropout, one training step's gradient ``g(m)`` depends on the random
mask ``m``. Split it as

    g(m) = g_clean + b + n(m),   b = E_m g(m) - g_clean,   E_m n(m) = 0,

where ``g_clean`` is the gradient with dropout switched off (the deterministic network).
``b`` is the note's "regularization gradient" (for linear regression it is exactly
``2 var Gamma^2 w``, see :func:`droplab.theory.linear_gradient_moments`), and
``trace Cov(n) = E ||g(m) - E g||^2`` is the size of the gradient noise dropout injects.
:func:`gradient_decomposition` estimates both for any torch module by Monte Carlo.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from droplab.layers import is_dropout

__all__ = ["GradientDecomposition", "gradient_decomposition"]


@dataclass(frozen=True)
class GradientDecomposition:
    """Result of :func:`gradient_decomposition`; vectors are flattened over ``names``.

    Attributes:
        clean: gradient with dropout off, shape (P,).
        mean: Monte Carlo mean of the gradient with dropout, shape (P,).
        bias: ``mean - clean``, shape (P,): the regularization gradient.
        bias_stderr: standard error of each coordinate of ``bias``, shape (P,).
        noise_trace: unbiased estimate of ``trace Cov_masks(g)``.
        noise_trace_stderr: its standard error (from batch means over the samples).
        samples: number of masks drawn.
        names: ``(parameter name, shape)`` for each block of the flat vectors.
    """

    clean: Tensor
    mean: Tensor
    bias: Tensor
    bias_stderr: Tensor
    noise_trace: float
    noise_trace_stderr: float
    samples: int
    names: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def bias_norm(self) -> float:
        """``||bias||`` (biased upward by MC noise by about ``||bias_stderr||``)."""
        return float(self.bias.norm())

    @property
    def clean_norm(self) -> float:
        return float(self.clean.norm())

    def unflatten(self, vector: Tensor) -> dict[str, Tensor]:
        """Split a flat (P,) vector into one tensor per parameter name."""
        out, start = {}, 0
        for name, shape in self.names:
            size = math.prod(shape)
            out[name] = vector[start : start + size].reshape(shape)
            start += size
        return out


def _flat_grad(loss: Tensor, params: Sequence[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    parts = [
        torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
        for p, g in zip(params, grads)
    ]
    return torch.cat(parts).double()  # (P,)


def gradient_decomposition(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batch: tuple[Tensor, Tensor],
    samples: int = 200,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    params: Sequence[tuple[str, Tensor]] | None = None,
    batches: int = 20,
) -> GradientDecomposition:
    """Monte Carlo estimate of ``E[grad with dropout] - grad without``, and the gradient noise.

    The clean gradient is computed with every dropout module in eval mode; each of the
    ``samples`` noisy gradients with only the dropout modules in train mode (other layers,
    e.g. batch norm, stay in eval mode so the masks are the only randomness). The modules'
    training flags are restored afterwards.

    Randomness: the masks come from torch's global RNG (what ``torch.nn.Dropout`` and
    droplab layers without their own generator use), inside ``torch.random.fork_rng``
    seeded from ``seed`` (or one draw of ``generator``); the global RNG state is restored
    on exit, so the call has no side effect on it. Layers that carry their own generator
    use it.

    Args:
        model: any ``nn.Module`` with torch or droplab dropout layers.
        loss_fn: ``loss_fn(model(x), y) -> scalar``.
        batch: ``(x, y)``.
        samples: number of masks (>= 2 * batches).
        generator / seed: source of the mask seed (give at most one; neither: a fresh draw
            from the global RNG).
        params: ``(name, tensor)`` pairs to differentiate; default all
            ``model.named_parameters()`` with ``requires_grad``.
        batches: number of batch means for the standard error of ``noise_trace``.

    Returns:
        :class:`GradientDecomposition`; ``bias_stderr`` is the per-coordinate sample sd
        over ``sqrt(samples)``; ``noise_trace`` is ``sum_j`` of the unbiased per-coordinate
        sample variances.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2 * batches:
        raise ValueError(f"samples must be an int >= 2 * batches = {2 * batches}, got {samples!r}")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 2:
        raise ValueError(f"batches must be an int >= 2, got {batches!r}")
    if generator is not None and seed is not None:
        raise ValueError("give at most one of generator= and seed=")
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError("batch must be a pair (x, y)")
    x, y = batch
    dropouts = [m for m in model.modules() if is_dropout(m)]
    if not dropouts:
        raise ValueError(
            "no dropout module found in model; gradient_decomposition needs torch.nn.Dropout-"
            "like layers or droplab layers (e.g. droplab.Dropout, droplab.GaussianDropout)"
        )
    if params is None:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters with requires_grad=True")
    names = tuple((n, tuple(p.shape)) for n, p in params)
    tensors = [p for _, p in params]

    if seed is None:
        device = generator.device if generator is not None else "cpu"
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
    devices = [x.device] if x.device.type == "cuda" else []
    saved = {m: m.training for m in model.modules()}
    try:
        model.eval()
        clean = _flat_grad(loss_fn(model(x), y), tensors)  # (P,)
        for m in dropouts:
            m.train()
        per_batch = samples // batches
        sizes = [per_batch + (1 if i < samples % batches else 0) for i in range(batches)]
        means, m2s, traces = [], [], []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for size in sizes:
                g = torch.stack(
                    [_flat_grad(loss_fn(model(x), y), tensors) for _ in range(size)]
                )  # (size, P)
                mu = g.mean(0)  # (P,)
                m2 = (g - mu).pow(2).sum(0)  # (P,)
                means.append(mu)
                m2s.append(m2)
                traces.append(float(m2.sum()) / (size - 1))
    finally:
        for m, flag in saved.items():
            m.training = flag

    M = torch.stack(means)  # (batches, P)
    counts = torch.tensor(sizes, dtype=torch.float64, device=M.device)[:, None]  # (batches, 1)
    mean = (counts * M).sum(0) / samples  # (P,)
    # Chan et al.'s pooled sum of squares: within-batch plus between-batch parts
    m2_total = torch.stack(m2s).sum(0) + (counts * (M - mean).pow(2)).sum(0)  # (P,)
    var = m2_total / (samples - 1)  # (P,)
    t = torch.tensor(traces, dtype=torch.float64)
    dtype = tensors[0].dtype
    return GradientDecomposition(
        clean=clean.to(dtype),
        mean=mean.to(dtype),
        bias=(mean - clean).to(dtype),
        bias_stderr=(var / samples).sqrt().to(dtype),
        noise_trace=float(var.sum()),
        noise_trace_stderr=float(t.std() / math.sqrt(batches)),
        samples=samples,
        names=names,
    )
