"""The fast path: K MLPs trained as one computation on stacked weights.

Member k's layer l is ``W[l][k]`` of shape ``(in, out)`` and ``b[l][k]`` of shape
``(1, out)``; a step computes ``h <- act(baddbmm(b, h, W))`` for all members at once on
``(K, B, ·)`` activations, each member on its own batch (its own data order), with its own
dropout masks (:func:`droplab.train.noise.batched_dropout`). The optimizer is torch's own
(fused where the device supports it) with one parameter group per member, so every
member has its own learning rate and weight decay, and the update of member k touches
only member k's slices.
"""

from __future__ import annotations

import itertools
import math
import time

import torch
import torch.nn.functional as F

from droplab import rng
from droplab.models.factory import ModelSpec, _slot_on
from droplab.train.config import MemberConfig, TrainConfig
from droplab.train.noise import MemberNoise, batched_dropout
from droplab.train.optim import StackedOptimizer
from droplab.train.tracking import split_metrics

__all__ = ["StackedMLP", "fit_mlp", "predict"]

_ACT = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "elu": F.elu,
    "selu": F.selu,
    "identity": lambda h: h,
}


class StackedMLP:
    """K MLPs ``sizes[0] -> ... -> sizes[-1]`` with stacked weights and dropout slots.

    Slot 0 is the input slot, slot ``l + 1`` follows hidden layer ``l``; ``slot_on[s]`` says
    whether slot s holds dropout. Init: torch's ``nn.Linear`` default,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases, drawn per member from
    its ``"init"`` stream.
    """

    def __init__(
        self,
        spec: ModelSpec,
        sizes: list[int],
        members: list[MemberConfig],
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.spec, self.sizes, self.K = spec, sizes, len(members)
        self.act = _ACT[spec.activation]
        n_hidden = len(sizes) - 2
        self.slot_on = [spec.placement != "none"] + [
            _slot_on(spec.placement, i == n_hidden - 1, is_cnn=False) for i in range(n_hidden)
        ]
        self.W: list[torch.Tensor] = []
        self.b: list[torch.Tensor] = []
        for i, o in itertools.pairwise(sizes):
            self.W.append(torch.empty(self.K, i, o, dtype=dtype))
            self.b.append(torch.empty(self.K, 1, o, dtype=dtype))
        for k, m in enumerate(members):
            g = rng.generator(m.seed, "init")
            for W, b in zip(self.W, self.b):
                bound = 1.0 / math.sqrt(W.shape[1])
                W[k] = (
                    torch.empty(W.shape[2], W.shape[1], dtype=dtype)
                    .uniform_(-bound, bound, generator=g)
                    .T
                )  # (out, in) like nn.Linear, stored (in, out)
                b[k, 0] = torch.empty(b.shape[2], dtype=dtype).uniform_(-bound, bound, generator=g)
        self.W = [w.to(device) for w in self.W]
        self.b = [b.to(device) for b in self.b]

    def params(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.W, self.b) for t in pair]

    def forward(
        self,
        x: torch.Tensor,
        W: list[torch.Tensor],
        b: list[torch.Tensor],
        noise: MemberNoise | None,
        eval_noise: MemberNoise | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(K, B, O)`` and the last hidden activations ``(K, B, H)`` (before that
        slot's dropout) of input ``x`` ``(K, B, D)``.

        ``noise``: dropout masks from these streams (training, or MC evaluation). With
        ``noise=None`` the forward is deterministic: classic-scaled members multiply the
        slot's activations by keep (``eval_noise`` supplies the rates), others use ``h``.
        """
        h = x
        last_hidden = x
        for j in range(len(W)):
            if self.slot_on[j]:
                if noise is not None:
                    h = batched_dropout(h, noise, j)
                elif eval_noise is not None:
                    s = eval_noise.eval_scale(j)
                    h = h if s is None else h * s  # (K, B, H) * (K, 1, 1)
            h = torch.baddbmm(b[j], h, W[j])  # (K, B, out)
            if j < len(W) - 1:
                h = self.act(h)
                last_hidden = h
        return h, last_hidden


def member_rates(net: StackedMLP, members: list[MemberConfig]) -> list[list[float]]:
    """Per slot, the members' P(drop) (0 where the slot is off)."""
    rates = []
    for s, on in enumerate(net.slot_on):
        r = [(m.input_rate if s == 0 else m.hidden_rate) if on else 0.0 for m in members]
        rates.append(r)
    if net.spec.placement == "none" and any(m.input_rate or m.hidden_rate for m in members):
        raise ValueError("placement='none' has no dropout slots, but a member has a rate > 0")
    return rates


def _optimizer(net: StackedMLP, members, cfg: TrainConfig, *, fused: bool | None = None):
    """SGD/Adam on the stacked weights with each member's lr and weight decay."""
    return StackedOptimizer(
        net.params(),
        kind=cfg.optimizer,
        lrs=[cfg.lr if m.lr is None else m.lr for m in members],
        weight_decays=[
            cfg.weight_decay if m.weight_decay is None else m.weight_decay for m in members
        ],
        betas=cfg.betas,
        eps=cfg.eps,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        fused=fused,
    )


@torch.no_grad()
def max_norm_stacked_(W: torch.Tensor, c: torch.Tensor) -> None:
    """Max-norm on stacked hidden weights ``W`` (K, in, out): each unit's incoming vector
    ``W[k, :, j]`` is rescaled to norm <= c[k] (``c`` (K, 1, 1), inf for none)."""
    norm = W.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (K, 1, out)
    W.mul_(torch.clamp(c / norm, max=1.0))


def loss_per_member(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Mean training loss of each member: cross-entropy (classification) or MSE.
    out (K, B, O), y (K, B) -> (K,)."""
    K, B = y.shape
    if task == "classification":
        ce = F.cross_entropy(out.reshape(K * B, -1), y.reshape(-1), reduction="none")  # (K*B,)
        return ce.view(K, B).mean(1)
    return (out.squeeze(-1) - y).pow(2).mean(1)


@torch.no_grad()
def predict(
    net: StackedMLP,
    x: torch.Tensor,
    W: list[torch.Tensor],
    b: list[torch.Tensor],
    *,
    task: str,
    rates_noise: MemberNoise,
    mc: MemberNoise | None = None,
    samples: int = 0,
    chunk: int = 8192,
) -> torch.Tensor:
    """Predictions of all K members on a shared input ``x`` (n, D): class probabilities
    (K, n, C) or regression outputs (K, n). With ``mc``, the average of ``samples``
    stochastic forward passes (probabilities averaged)."""
    outs = []
    for s in range(0, x.shape[0], chunk):
        xc = x[s : s + chunk].unsqueeze(0).expand(net.K, -1, -1)  # (K, c, D)
        if mc is None:
            o, _ = net.forward(xc, W, b, None, rates_noise)
            o = o.softmax(-1) if task == "classification" else o.squeeze(-1)
        else:
            acc = None
            for _ in range(samples):
                mc.advance()
                o, _ = net.forward(xc, W, b, mc)
                o = o.softmax(-1) if task == "classification" else o.squeeze(-1)
                acc = o if acc is None else acc + o
            o = acc / samples
        outs.append(o)
    return torch.cat(outs, 1)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def fit_mlp(
    spec: ModelSpec,
    data,
    members: list[MemberConfig],
    cfg: TrainConfig,
    *,
    device: torch.device,
    extra_loss=None,
    tracker,
    timings: dict[str, float] | None = None,
    fused: bool | None = None,
) -> tuple[StackedMLP, list, list]:
    """Train K MLP members at once; returns the net and each member's selected weights
    (stacked W, b). Metrics go to ``tracker``."""
    task = data.task
    x_tr = data.x_train.to(device).flatten(1)  # (n, D)
    y_tr = data.y_train.to(device)
    n, D = x_tr.shape
    sizes = [D, *spec.resolved_widths(), data.n_outputs]
    net = StackedMLP(spec, sizes, members, device=device, dtype=x_tr.dtype)
    K = net.K
    rates = member_rates(net, members)
    gauss = [(m.dropout or spec.dropout) == "gaussian" for m in members]
    noise = MemberNoise(
        [m.seed for m in members],
        rates,
        gauss,
        scaling=spec.scaling,
        device=device,
        dtype=x_tr.dtype,
        backend={"auto": "auto", "kernel": "kernel", "torch": "torch"}[cfg.masks],
    )
    order = [rng.generator(m.seed, "order") for m in members]
    opt = _optimizer(net, members, cfg, fused=fused)
    c = [cfg.max_norm if m.max_norm is None else m.max_norm for m in members]
    max_norm = None
    if any(v is not None for v in c):
        max_norm = torch.tensor(
            [math.inf if v is None else v for v in c], device=device, dtype=x_tr.dtype
        ).view(K, 1, 1)
    hidden_keep = torch.tensor([1.0 - r for r in rates[-1]], device=device, dtype=x_tr.dtype)
    splits = {
        s: (getattr(data, f"x_{s}").to(device).flatten(1), getattr(data, f"y_{s}").to(device))
        for s in ("train", "val", "test")
    }
    best_W = [w.clone() for w in net.W]
    best_b = [b.clone() for b in net.b]
    n_layers = len(net.W)
    timings = {} if timings is None else timings
    timings.setdefault("train_s", 0.0)
    timings.setdefault("eval_s", 0.0)
    for epoch in range(1, cfg.epochs + 1):
        t0 = _clock(device)
        perm = torch.stack([torch.randperm(n, generator=g) for g in order]).to(device)  # (K, n)
        for start in range(0, n, cfg.batch_size):
            idx = perm[:, start : start + cfg.batch_size]  # (K, b)
            xb, yb = x_tr[idx], y_tr[idx]  # (K, b, D), (K, b)
            W = [w.detach().requires_grad_() for w in net.W]
            b = [t.detach().requires_grad_() for t in net.b]
            noise.advance()
            out, hidden = net.forward(xb, W, b, noise)
            loss = loss_per_member(out, yb, task)  # (K,)
            if extra_loss is not None:
                loss = loss + extra_loss(hidden, W[-1].transpose(1, 2), out, hidden_keep)
            grads = torch.autograd.grad(loss.sum(), [t for pair in zip(W, b) for t in pair])
            opt.step(grads)
            if max_norm is not None:
                for j in range(n_layers - 1):
                    max_norm_stacked_(net.W[j], max_norm)
        t1 = _clock(device)
        timings["train_s"] += t1 - t0
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            res = {
                s: split_metrics(
                    predict(
                        net, x, net.W, net.b, task=task, rates_noise=noise, chunk=cfg.eval_batch
                    ),
                    y,
                    task,
                )
                for s, (x, y) in splits.items()
            }
            improved = tracker.record(epoch, res).to(device)
            for dst, src in zip(best_W + best_b, net.W + net.b):
                dst.copy_(torch.where(improved.view(K, 1, 1), src, dst))
            timings["eval_s"] += _clock(device) - t1
    return net, noise, best_W, best_b
