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

from droplab.train.linear import narrow
from droplab.train.noise import MemberNoise, _row_masks, batched_dropout, fusable

__all__ = ["mlp_grads", "supported"]


def _hidden_modes(net, noise: MemberNoise, x: torch.Tensor) -> list[str] | None:
    """Per hidden slot 1..L-1: "drop" (the fused kernel) or "relu" (no member drops); None
    when the net or a slot needs autograd (not a ReLU ``StackedMLP`` on the CPU, Gaussian
    noise, torch masks, a dtype the kernel lacks)."""
    from droplab.train.mlp import StackedMLP  # here: mlp imports this module

    if not isinstance(net, StackedMLP) or net.spec.activation != "relu":
        return None
    if x.device.type != "cpu":
        return None
    modes = []
    for slot in range(1, len(net.W)):
        if not net.slot_on[slot] or not noise.slots[slot]["any"]:
            modes.append("relu")
        elif fusable(noise, slot) and _row_masks(noise, slot, x) is not None:
            modes.append("drop")
        else:
            return None
    return modes


def supported(net, noise: MemberNoise, x: torch.Tensor, *, extra_loss=None) -> bool:
    """Whether :func:`mlp_grads` covers this net and noise for data like ``x``: a
    ``StackedMLP`` with ReLU on the CPU, every hidden dropout slot Bernoulli on the kernel
    path (``noise.backend == "kernel"``, float32/float64), and no ``extra_loss`` (that
    needs autograd). The input slot may hold any dropout (the input needs no gradient)."""
    return extra_loss is None and _hidden_modes(net, noise, x) is not None


@torch.no_grad()
def mlp_grads(net, x: torch.Tensor, y: torch.Tensor, noise: MemberNoise, task: str):
    """Gradients of ``loss_per_member(net.forward(x, ...), y, task).sum()`` with respect to
    ``[W_0, b_0, W_1, b_1, ...]``, for the current ``noise.counter`` (call
    ``noise.advance()`` first, as before any training forward).

    Shapes: x (K, B, D), y (K, B) -> dW_j (K, I_j, O_j), db_j (K, 1, O_j). Needs
    :func:`supported`. Large tensors live in ``net.grad_buffers`` (if set), under the same
    promise as the autograd path: the returned gradients and the step's activations are
    dead before the net's next training step.
    """
    modes = _hidden_modes(net, noise, x)
    if modes is None:
        raise ValueError("mlp_grads: this net/noise needs autograd (see supported())")
    bufs = net.grad_buffers
    L = len(net.W)
    n_slots = len(noise.slots)
    K, B = x.shape[0], x.shape[1]

    def buf(key, shape, like):
        if bufs is None:
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        return bufs.empty(key, shape, like.dtype, like.device)

    h = batched_dropout(x, noise, 0) if net.slot_on[0] else x  # (K, B, D)
    hs = [h]  # each layer's input h_j
    for j in range(L):
        W, b = net.W[j], net.b[j]
        if narrow(B, W.shape[1], W.shape[2]):  # y^T = W^T h^T + b^T, a (K, B, O) view
            z = torch.baddbmm(b.transpose(1, 2), W.transpose(1, 2), h.transpose(1, 2)).mT
        else:
            z = torch.baddbmm(b, h, W, out=buf((j, "y"), (K, B, W.shape[2]), h))
        if j < L - 1:
            slot = j + 1
            if modes[j] == "drop":
                rows = _row_masks(noise, slot, z)
                z = rows.relu(
                    z, noise.counter * n_slots + slot, out=z if z.is_contiguous() else None
                )
            else:
                z = torch.relu_(z) if z.is_contiguous() else torch.relu(z)
            hs.append(z)
        h = z
    g = _loss_grad(h, y, task)  # (K, B, O)
    grads: list[torch.Tensor] = [None] * (2 * L)  # type: ignore[list-item]
    for j in range(L - 1, -1, -1):
        W, hj = net.W[j], hs[j]
        if narrow(B, W.shape[1], W.shape[2]):
            dW = torch.bmm(g.transpose(1, 2), hj).transpose(1, 2).contiguous()  # (K, I, O)
        else:
            dW = torch.bmm(hj.transpose(1, 2), g, out=buf((j, "W"), tuple(W.shape), g))
        db = torch.sum(g, 1, keepdim=True, out=buf((j, "b"), (K, 1, W.shape[2]), g))
        grads[2 * j], grads[2 * j + 1] = dW, db
        if j:
            dh = torch.bmm(g, W.transpose(1, 2), out=buf((j, "h"), (K, B, W.shape[1]), g))
            rows = _row_masks(noise, j, dh) if modes[j - 1] == "drop" else None
            g = _relu_backward_(dh, hj, rows)
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
