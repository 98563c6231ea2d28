"""The stacked MLP's training gradients by hand: the same numbers as autograd, less overhead.

For the trainer's common case (MLP, ReLU, Bernoulli dropout on the CPU kernel path, no
``extra_loss``) one step's gradients are computed here by explicit forward and backward
passes instead of autograd. Every product, reduction and elementwise op is the one the
autograd path runs (``stacked_linear``'s layouts, ``kernels.RowBernoulli``'s fused
ReLU + dropout, ``log_softmax`` and its backward), in the same order, so the gradients are
bit for bit those of ``torch.autograd.grad`` on ``loss_per_member(...).sum()``
(``tests/train/test_backprop.py`` checks equality, not closeness). What goes away is the
per-step machinery: leaf tensors, graph nodes, saved-tensor bookkeeping and the Python
of five custom autograd functions, ~1 ms per step on the 2-core VM, 10-17% of a
benchmark epoch (docs/performance.md).

The math, for layers ``j = 0..L-1`` with ``h_0`` the (dropped-out) input, member axis first:

    forward   z_j = h_j W_j + b_j,   h_{j+1} = relu(z_j) m_j s_j        (K, B, ·)
    loss      l_k = mean_B CE(z_{L-1}, y)  or  mean_B (z_{L-1} - y)^2
    backward  g_{L-1} = dl/dz_{L-1} (of sum_k l_k)
              dW_j = h_j^T g_j,   db_j = sum_B g_j
              g_{j-1} = (g_j W_j^T) s_{j-1} 1[h_j > 0]

(``m`` the dropout mask, ``s`` the scale; a slot without dropout has ``m s = 1``; the
ReLU+dropout backward reads ``h_j`` itself, as ``h_j > 0`` exactly where the unit is
kept and ``z > 0``.)
"""

from __future__ import annotations

import torch

from droplab.train.linear import linear_forward, linear_grads
from droplab.train.noise import MemberNoise, _row_masks, batched_dropout, fusable

__all__ = ["mlp_grads", "supported"]


def _hidden_masks(net, noise: MemberNoise, x: torch.Tensor) -> list | None:
    """Per hidden slot 1..L-1, the slot's fused ReLU+dropout (its ``kernels.RowBernoulli``)
    or None where no member drops there (plain ReLU); None altogether when the net or a
    slot needs autograd (not a ReLU ``StackedMLP`` on the CPU, Gaussian noise, torch
    masks, a dtype the kernel lacks)."""
    from droplab.train.mlp import StackedMLP  # here: mlp imports this module

    if not isinstance(net, StackedMLP) or net.spec.activation != "relu":
        return None
    if x.device.type != "cpu":
        return None
    masks = []
    for slot in range(1, len(net.W)):
        if not net.slot_on[slot] or not noise.slots[slot]["any"]:
            masks.append(None)
            continue
        rows = _row_masks(noise, slot, x) if fusable(noise, slot) else None
        if rows is None:
            return None
        masks.append(rows)
    return masks


def supported(net, noise: MemberNoise, x: torch.Tensor, *, extra_loss=None) -> bool:
    """Whether :func:`mlp_grads` covers this net and noise for data like ``x``: a
    ``StackedMLP`` with ReLU on the CPU, every hidden dropout slot Bernoulli on the kernel
    path (``noise.backend == "kernel"``, float32/float64), and no ``extra_loss`` (that
    needs autograd). The input slot may hold any dropout (the input needs no gradient)."""
    return extra_loss is None and _hidden_masks(net, noise, x) is not None


@torch.no_grad()
def mlp_grads(net, x: torch.Tensor, y: torch.Tensor, noise: MemberNoise, task: str):
    """Gradients of ``loss_per_member(net.forward(x, ...), y, task).sum()`` with respect to
    ``[W_0, b_0, W_1, b_1, ...]``, for the current ``noise.counter`` (call
    ``noise.advance()`` first, as before any training forward).

    Shapes: x (K, B, D), y (K, B) -> dW_j (K, I_j, O_j), db_j (K, 1, O_j). Needs
    :func:`supported`. Large tensors live in ``net.grad_buffers`` (if set), under the same
    promise as the autograd path: the returned gradients and the step's activations are
    dead before the net's next training step. The products are ``stacked_linear``'s own
    (:func:`linear_forward`, :func:`linear_grads`).
    """
    masks = _hidden_masks(net, noise, x)
    if masks is None:
        raise ValueError("mlp_grads: this net/noise needs autograd (see supported())")
    bufs = net.grad_buffers
    L = len(net.W)
    offset = noise.counter * len(noise.slots)  # + slot: as batched_dropout's offsets
    h = batched_dropout(x, noise, 0) if net.slot_on[0] else x  # (K, B, D)
    hs = [h]  # each layer's input h_j
    for j in range(L):
        z = linear_forward(h, net.W[j], net.b[j], bufs, j)  # (K, B, O_j)
        if j < L - 1:
            dense = z.is_contiguous()  # else a narrow layer's transposed view
            rows = masks[j]
            if rows is not None:
                z = rows.relu(z, offset + j + 1, out=z if dense else None)
            else:
                z = torch.relu_(z) if dense else torch.relu(z)
            hs.append(z)
        h = z
    g = _loss_grad(h, y, task)  # (K, B, O)
    grads: list[torch.Tensor] = [None] * (2 * L)  # type: ignore[list-item]
    for j in range(L - 1, -1, -1):
        dh, grads[2 * j], grads[2 * j + 1] = linear_grads(hs[j], net.W[j], g, bufs, j, need_h=j > 0)
        if j:
            g = _relu_backward_(dh, hs[j], masks[j - 1])
    return grads


def _relu_backward_(g: torch.Tensor, h: torch.Tensor, rows) -> torch.Tensor:
    """``g <- g * s_k`` where ``h > 0``, else 0, in place: the backward of ReLU (``rows``
    None) or of ReLU + dropout (``rows`` the slot's ``kernels.RowBernoulli``), read off the
    output ``h``. With several torch threads two parallel torch passes
    (``threshold_backward``, then the members' scales) beat the kernel's one
    single-threaded pass (~65 vs ~95 us at (16, 100, 256) on the 2-core VM); the values
    are the same bits either way (the scales are the kernel's own multipliers)."""
    m = None
    if rows is not None:
        m = rows.multipliers(g.dtype)
        if m is None or torch.get_num_threads() == 1:
            return rows.backward(g, h, out=g)
    g = torch.ops.aten.threshold_backward.grad_input(g, h, 0, grad_input=g)
    return g if m is None else g.mul_(m.view(-1, *([1] * (g.dim() - 1))))


def _loss_grad(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """d(sum_k l_k)/d out for ``loss_per_member``'s losses, with autograd's exact ops:
    the mean's backward gives each row ``1/B`` (a float rounded once, as ``ones / B``);
    cross-entropy: ``log_softmax``'s backward of ``-1/B`` at the label; MSE:
    ``(1/B) * (2 (out - y))``. out (K, B, O), y (K, B) -> (K, B, O)."""
    K, B, C = out.shape
    inv = torch.ones((), dtype=out.dtype, device=out.device) / B
    if task == "classification":
        logp = torch.log_softmax(out.reshape(K * B, C), -1)  # (K*B, C)
        g = torch.zeros_like(logp)
        g.scatter_(1, y.reshape(-1, 1), (-inv).expand(K * B, 1))
        return torch.ops.aten._log_softmax_backward_data(g, logp, -1, logp.dtype).view(K, B, C)
    d = out.squeeze(-1) - y  # (K, B)
    return (inv.expand(K, B) * (2.0 * d)).unsqueeze(-1)
