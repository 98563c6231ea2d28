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

__all__ = ["GradBuffers", "linear_forward", "linear_grads", "narrow", "stacked_linear"]

NARROW = 32  # output widths below this (and below I and B) use the transposed products


def narrow(batch: int, fan_in: int, fan_out: int) -> bool:
    """Whether a (B, I) -> (B, O) layer computes ``y`` and ``dW`` transposed."""
    return fan_out < NARROW and fan_out < fan_in and fan_out < batch


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


def _buffer(
    buffers: GradBuffers | None, key: tuple, shape: tuple[int, ...], like: torch.Tensor
) -> torch.Tensor:
    if buffers is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return buffers.empty(key, shape, like.dtype, like.device)


def linear_forward(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    buffers: GradBuffers | None = None,
    key: object = None,
    *,
    scratch: bool = False,
) -> torch.Tensor:
    """``y = h W + b`` in the layer's layout, without autograd: a narrow layer as
    ``(W^T h^T + b^T)^T`` (a transposed view, fresh memory), others into the key's
    training buffer, or its :meth:`GradBuffers.scratch` buffer with ``scratch`` (when
    ``buffers`` is given). Shape: h (K, B, I), W (K, I, O), b (K, 1, O) -> (K, B, O)."""
    K, B, O = h.shape[0], h.shape[1], W.shape[2]  # noqa: E741
    if narrow(B, W.shape[1], O):  # y^T = W^T h^T + b^T: (K, O, B), returned as a view
        return torch.baddbmm(b.transpose(1, 2), W.transpose(1, 2), h.transpose(1, 2)).mT
    if buffers is None:
        return torch.baddbmm(b, h, W)
    dtype = torch.result_type(h, W)
    if scratch:
        out = buffers.scratch((key, "eval"), (K, B, O), dtype, h.device)
    else:
        out = buffers.empty((key, "y"), (K, B, O), dtype, h.device)
    return torch.baddbmm(b, h, W, out=out)


def linear_grads(
    h: torch.Tensor,
    W: torch.Tensor,
    g: torch.Tensor,
    buffers: GradBuffers | None = None,
    key: object = None,
    *,
    need_h: bool = True,
    need_W: bool = True,
    need_b: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dh, dW, db) = (g W^T, h^T g, sum_B g)`` of :func:`linear_forward` for the
    output gradient ``g`` (None where not needed), a narrow layer's ``dW`` computed as
    ``(g^T h)^T``; into the key's buffers when ``buffers`` is given. Shapes: h (K, B, I),
    W (K, I, O), g (K, B, O) -> (K, B, I), (K, I, O), (K, 1, O)."""
    K, B, O = g.shape  # noqa: E741
    dh = dW = db = None
    if need_h:
        dh = torch.bmm(g, W.transpose(1, 2), out=_buffer(buffers, (key, "h"), h.shape, g))
    if need_W:
        if narrow(B, W.shape[1], O):
            dW = torch.bmm(g.transpose(1, 2), h).transpose(1, 2).contiguous()  # (K, I, O)
        else:
            dW = torch.bmm(h.transpose(1, 2), g, out=_buffer(buffers, (key, "W"), W.shape, g))
    if need_b:
        db = torch.sum(g, 1, keepdim=True, out=_buffer(buffers, (key, "b"), (K, 1, O), g))
    return dh, dW, db


class _StackedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, W, b, buffers: GradBuffers | None, key: object) -> torch.Tensor:
        ctx.buffers, ctx.key = buffers, key
        ctx.save_for_backward(h, W)
        return linear_forward(h, W, b, buffers, key)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, W = ctx.saved_tensors
        need_h, need_W, need_b = ctx.needs_input_grad[:3]
        grads = linear_grads(
            h, W, g, ctx.buffers, ctx.key, need_h=need_h, need_W=need_W, need_b=need_b
        )
        return (*grads, None, None)


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
        return linear_forward(h, W, b, buffers, key, scratch=True)
    return _StackedLinear.apply(h, W, b, buffers, key)
