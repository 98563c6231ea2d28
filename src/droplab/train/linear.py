"""The stacked linear layer ``y = h W + b`` of K members, with a hand-written backward.

Shapes: ``h`` (K, B, I), ``W`` (K, I, O), ``b`` (K, 1, O) -> ``y`` (K, B, O). The three
products of a training step are

    forward   y  = h W + b          (B x I) (I x O)
    backward  dh = g W^T            (B x O) (O x I)
              dW = h^T g            (I x B) (B x O)
              db = sum_B g

Each product can also be computed transposed (``y^T = W^T h^T + b^T``, ``dW^T = g^T h``):
the same numbers, another memory layout. CPU batched GEMMs are slow when the output's
rows are short: on a 2-core AMD EPYC (torch 2.13, K=16, B=100, I=256, O=10) ``h W`` runs at
18 GFLOP/s and ``h^T g`` at 15 GFLOP/s, their transposed forms at 78 and 72 GFLOP/s
(``benchmarks/bench_trainer.py`` measures the whole step). So a narrow layer (O small and
smaller than I and B) computes those two products transposed. The choice depends only on
the shapes, never on timings, so a run is reproducible.
"""

from __future__ import annotations

import math

import torch

__all__ = ["GradBuffers", "narrow", "stacked_linear"]

NARROW = 32  # output widths below this (and below I and B) use the transposed products


def narrow(batch: int, fan_in: int, fan_out: int) -> bool:
    """Whether a (B, I) -> (B, O) layer computes ``y`` and ``dW`` transposed."""
    return fan_out < NARROW and fan_out < fan_in and fan_out < batch


def _forward(
    h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, t: bool, out: torch.Tensor | None = None
) -> torch.Tensor:
    if t:  # y^T = W^T h^T + b^T: (K, O, B), returned as a (K, B, O) view
        return torch.baddbmm(b.transpose(1, 2), W.transpose(1, 2), h.transpose(1, 2)).mT
    if out is not None:
        return torch.baddbmm(b, h, W, out=out)
    return torch.baddbmm(b, h, W)


class GradBuffers:
    """Reused memory for the large tensors of one training step of a net's stacked layers:
    each layer's forward output ``y``, input gradient ``dh``, weight gradient ``dW`` and
    bias gradient ``db``.

    Why: on glibc a freed block of a few MiB is handed back to the kernel (heap trim or
    munmap) and the next step's fresh tensor faults its pages in again. On the 2-core VM
    that made a (16, 100, 256) bias broadcast into a fresh ``baddbmm`` output take
    ~0.6 ms instead of ~0.05 ms, ~6800 page faults per epoch of the benchmark MLPs; with
    every step's large tensors in warm buffers, none (see docs/performance.md).

    Whoever holds a ``GradBuffers`` promises: every tensor a step's forward or backward
    returns is dead (nobody reads it) before the same net runs its next forward with
    gradients, which is how the trainer works (it consumes a step's gradients in
    ``opt.step`` and drops the step's activations). One per net; not shared between
    threads. Evaluation (no gradients) never uses the buffers.
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple, torch.Tensor] = {}

    def empty(
        self, key: tuple, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """An uninitialized contiguous tensor of this shape, dtype and device, reused per
        (key, shape) (a shorter last batch gets its own buffer instead of evicting the
        full one).

        Each call returns a fresh alias (``detach()``) of the buffer, and all aliases share
        one version counter: autograd then refuses (instead of silently using overwritten
        values) a backward through a step whose buffers a later step reused.
        """
        k = (key, shape)
        b = self._bufs.get(k)
        if b is None or b.dtype != dtype or b.device != device:
            b = self._bufs[k] = torch.empty(shape, dtype=dtype, device=device)
        return b.detach()

    def scratch(
        self, key: tuple, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Like :meth:`empty` for tensors no autograd graph sees (evaluation): the leading
        elements of one flat buffer per key, grown to the largest request, so the different
        row counts of evaluation splits share one buffer instead of each faulting in fresh
        memory (a view: not for outputs of autograd functions)."""
        numel = math.prod(shape)
        b = self._bufs.get(key)
        if b is None or b.numel() < numel or b.dtype != dtype or b.device != device:
            b = self._bufs[key] = torch.empty(numel, dtype=dtype, device=device)
        return b[:numel].view(shape)

    def get(self, key: tuple, like: torch.Tensor) -> torch.Tensor:
        """:meth:`empty` with ``like``'s shape, dtype and device."""
        return self.empty(key, tuple(like.shape), like.dtype, like.device)


class _StackedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, W, b, buffers: GradBuffers | None, key: object) -> torch.Tensor:
        t = narrow(h.shape[1], W.shape[1], W.shape[2])
        ctx.t, ctx.buffers, ctx.key = t, buffers, key
        ctx.save_for_backward(h, W)
        out = None
        if buffers is not None and not t:
            shape = (h.shape[0], h.shape[1], W.shape[2])  # (K, B, O)
            out = buffers.empty((key, "y"), shape, torch.result_type(h, W), h.device)
        return _forward(h, W, b, t, out)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, W = ctx.saved_tensors
        bufs = ctx.buffers
        dh = dW = db = None
        if ctx.needs_input_grad[0]:
            if bufs is not None:
                shape = (g.shape[0], g.shape[1], W.shape[1])
                dh = bufs.empty((ctx.key, "h"), shape, g.dtype, g.device)
                dh = torch.bmm(g, W.transpose(1, 2), out=dh)  # (K, B, I)
            else:
                dh = torch.bmm(g, W.transpose(1, 2))  # (K, B, I)
        if ctx.needs_input_grad[1]:
            if ctx.t:
                dW = torch.bmm(g.transpose(1, 2), h).transpose(1, 2).contiguous()  # (K, I, O)
            elif bufs is not None:
                dW = torch.bmm(h.transpose(1, 2), g, out=bufs.get((ctx.key, "W"), W))
            else:
                dW = torch.bmm(h.transpose(1, 2), g)  # (K, I, O)
        if ctx.needs_input_grad[2]:
            if bufs is not None:
                like = g[:, :1]  # (K, 1, O) of g's dtype
                db = torch.sum(g, 1, keepdim=True, out=bufs.get((ctx.key, "b"), like))
            else:
                db = g.sum(1, keepdim=True)  # (K, 1, O)
        return dh, dW, db, None, None


def stacked_linear(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    *,
    buffers: GradBuffers | None = None,
    key: object = None,
) -> torch.Tensor:
    """``baddbmm(b, h, W)`` for K members, with each product in its fast layout.

    ``buffers``/``key``: write this layer's output (and, with gradients, its input, weight
    and bias gradients) into reused buffers (see :class:`GradBuffers` for the promise this
    makes); ``key`` names the layer. Without gradients (evaluation) the output goes into
    the buffer only: the caller promises it is dead before the next call with the key.

    Shape: h (K, B, I), W (K, I, O), b (K, 1, O) -> (K, B, O) (for a narrow layer a
    transposed view; callers that need contiguous rows reshape, which copies).
    """
    if h.device.type != "cpu":
        return torch.baddbmm(b, h, W)
    if not torch.is_grad_enabled():
        t = narrow(h.shape[1], W.shape[1], W.shape[2])
        out = None
        if buffers is not None and not t:
            shape = (h.shape[0], h.shape[1], W.shape[2])  # (K, B, O)
            out = buffers.scratch((key, "eval"), shape, torch.result_type(h, W), h.device)
        return _forward(h, W, b, t, out)
    return _StackedLinear.apply(h, W, b, buffers, key)
