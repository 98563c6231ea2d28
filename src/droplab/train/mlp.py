"""The fast path: K MLPs or CNNs trained as one computation on stacked weights.

MLP: member k's layer l is ``W[l][k]`` of shape ``(in, out)`` and ``b[l][k]`` of shape
``(1, out)``; a step computes ``h <- act(baddbmm(b, h, W))`` for all members at once on
``(K, B, ·)`` activations. CNN: the K members' conv layers run as ONE grouped convolution
(``groups=K``, member k's channels are group k), the linear head as a ``baddbmm``.
Each member trains on its own batch (its own data order) with its own dropout masks
(:func:`droplab.train.noise.batched_dropout`); the optimizer
(:class:`droplab.train.optim.StackedOptimizer`) gives every member its own learning
rate and weight decay, and the update of member k touches only member k's slices.
"""

from __future__ import annotations

import itertools
import math
import time

import torch
import torch.nn.functional as F

from droplab import rng
from droplab.models.factory import ModelSpec, _slot_on
from droplab.train import backprop
from droplab.train.config import MemberConfig, TrainConfig, train_eval_stride
from droplab.train.linear import GradBuffers, stacked_linear
from droplab.train.noise import MemberNoise, batched_dropout, fusable, relu_dropout
from droplab.train.optim import StackedOptimizer
from droplab.train.tracking import split_metrics

__all__ = ["StackedCNN", "StackedMLP", "fit_stacked", "make_net", "predict"]

_EVAL_ELEMENTS = 1 << 25  # activation elements per evaluation chunk (128 MB in float32)

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
        # reused weight/bias gradient outputs; set by a caller that consumes each step's
        # gradients before the next backward (fit_stacked), see linear.GradBuffers
        self.grad_buffers: GradBuffers | None = None
        # reused hidden-layer outputs of no-grad forwards (predict); set by fit_stacked
        self.eval_buffers: GradBuffers | None = None
        self.act = _ACT[spec.activation]
        # ReLU followed by Bernoulli dropout runs as one autograd op whose backward reads
        # the output instead of the mask (noise.relu_dropout); off when extra_loss needs
        # the activations before dropout
        self.fuse = spec.activation == "relu"
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

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Data rows as this net takes them: (n, *shape) -> (n, D)."""
        return x.flatten(1)

    def row_numel(self) -> int:
        """Largest activation of one example in one member (sizes evaluation chunks)."""
        return max(self.sizes)

    def max_norm_(self, c: torch.Tensor) -> None:
        """Max-norm on every hidden unit's incoming weights, c (K, 1, 1)."""
        for w in self.W[:-1]:
            max_norm_stacked_(w, c, dims=(1,))

    @torch.no_grad()
    def load_member(self, module: torch.nn.Module, W, b, k: int) -> None:
        """Copy member k's weights into a module built by ``models.build``."""
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        for lin, w, bb in zip(linears, W, b):
            lin.weight.copy_(w[k].T)  # (in, out) -> (out, in)
            lin.bias.copy_(bb[k, 0])

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
        fused = False  # slot j already applied together with the ReLU before it
        grad = torch.is_grad_enabled()
        for j in range(len(W)):
            if not fused:
                h = _apply_slot(h, j, self.slot_on[j], noise, eval_noise)
            fused = False
            hidden = j < len(W) - 1
            # evaluation: hidden outputs in reused memory (consumed by the next layer; the
            # returned logits never are, a caller may keep them)
            bufs = self.grad_buffers if grad else (self.eval_buffers if hidden else None)
            h = stacked_linear(h, W[j], b[j], buffers=bufs, key=j)  # (K, B, out)
            if hidden:
                nxt = j + 1
                if self.fuse and noise is not None and self.slot_on[nxt] and fusable(noise, nxt):
                    h = relu_dropout(h, noise, nxt, inplace=True)  # (K, B, out), fused
                    fused = True
                elif not grad and bufs is not None and self.act is torch.relu:
                    h = torch.relu_(h)  # the buffer itself: no fresh activation memory
                else:
                    h = self.act(h)
                last_hidden = h
        return h, last_hidden


class StackedCNN:
    """K CNNs (``models.build``'s cnn1d/cnn2d) with stacked weights.

    Conv layer l: ``W[l]`` (K, out, in, *kernel), ``b[l]`` (K, out); the head: ``W[-1]``
    (K, features, n_outputs), ``b[-1]`` (K, 1, n_outputs). Slots as in ``build``: 0 is the
    input, l + 1 follows conv layer l. Init: torch's default for Conv/Linear,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, per member from its ``"init"`` stream.
    """

    def __init__(self, spec, input_shape, n_outputs, members, *, device, dtype=torch.float32):
        self.spec, self.K = spec, len(members)
        self.grad_buffers: GradBuffers | None = None  # as in StackedMLP
        self.dims = 1 if spec.kind == "cnn1d" else 2
        self.in_shape = (
            (1, *input_shape) if self.dims == 1 and len(input_shape) == 1 else tuple(input_shape)
        )
        if len(self.in_shape) != self.dims + 1:
            raise ValueError(
                f"a {spec.kind} takes input_shape (L,)/(C, L) or (C, H, W), got {input_shape}"
            )
        self.act = _ACT[spec.activation]
        widths, kernels = spec.resolved_widths(), spec.resolved_kernel_sizes()
        n_conv = len(widths)
        self.slot_on = [spec.placement != "none"] + [
            _slot_on(spec.placement, i == n_conv - 1, is_cnn=True) for i in range(n_conv)
        ]
        self.conv = F.conv1d if self.dims == 1 else F.conv2d
        shapes = []
        c, sp = self.in_shape[0], self.in_shape[1:]
        self.spatial = [sp]
        for w, k in zip(widths, kernels):
            shapes.append(((w, c, *([k] * self.dims)), (w,), c * k**self.dims))
            sp = tuple((x + 2 * spec.padding - k) // spec.stride + 1 for x in sp)
            self.spatial.append(sp)
            c = w
        feat = c * math.prod(sp)
        shapes.append(((feat, n_outputs), (1, n_outputs), feat))
        self.W = [torch.empty(self.K, *ws, dtype=dtype) for ws, _, _ in shapes]
        self.b = [torch.empty(self.K, *bs, dtype=dtype) for _, bs, _ in shapes]
        for k, m in enumerate(members):
            g = rng.generator(m.seed, "init")
            for j, (ws, _, fan_in) in enumerate(shapes):
                bound = 1.0 / math.sqrt(fan_in)
                if j == len(shapes) - 1:  # head: drawn (out, in) like nn.Linear
                    self.W[j][k] = (
                        torch.empty(ws[1], ws[0], dtype=dtype)
                        .uniform_(-bound, bound, generator=g)
                        .T
                    )
                else:
                    self.W[j][k].uniform_(-bound, bound, generator=g)
                self.b[j][k].uniform_(-bound, bound, generator=g)
        self.W = [w.to(device) for w in self.W]
        self.b = [t.to(device) for t in self.b]

    def params(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.W, self.b) for t in pair]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.in_shape)  # (n, C, *spatial)

    def row_numel(self) -> int:
        chans = [self.in_shape[0]] + [w.shape[1] for w in self.W[:-1]]
        return max(c * math.prod(sp) for c, sp in zip(chans, self.spatial))

    def max_norm_(self, c: torch.Tensor) -> None:
        for w in self.W[:-1]:
            max_norm_stacked_(
                w, c.view(self.K, 1, *([1] * (w.dim() - 2))), dims=tuple(range(2, w.dim()))
            )

    @torch.no_grad()
    def load_member(self, module: torch.nn.Module, W, b, k: int) -> None:
        layers = [
            m
            for m in module.modules()
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))
        ]
        for layer, w, bb in zip(layers[:-1], W[:-1], b[:-1]):
            layer.weight.copy_(w[k])
            layer.bias.copy_(bb[k])
        layers[-1].weight.copy_(W[-1][k].T)
        layers[-1].bias.copy_(b[-1][k, 0])

    def forward(self, x, W, b, noise, eval_noise=None):
        """Logits (K, B, O) and the flattened last conv features (K, B, F) of x
        (K, B, C, *spatial)."""
        K, B = x.shape[:2]
        h = x
        n_conv = len(W) - 1
        for j in range(n_conv):
            h = _apply_slot(h, j, self.slot_on[j], noise, eval_noise)
            c, o = h.shape[2], W[j].shape[1]
            hg = h.transpose(0, 1).reshape(B, K * c, *h.shape[3:])  # (B, K*C, *sp)
            z = self.conv(
                hg,
                W[j].reshape(K * o, *W[j].shape[2:]),
                b[j].reshape(K * o),
                stride=self.spec.stride,
                padding=self.spec.padding,
                groups=K,
            )
            h = self.act(z).view(B, K, o, *z.shape[2:]).transpose(0, 1)  # (K, B, O, *sp')
        last_hidden = h.reshape(K, B, -1)  # (K, B, F)
        h = _apply_slot(h, n_conv, self.slot_on[n_conv], noise, eval_noise)
        out = stacked_linear(
            h.reshape(K, B, -1), W[-1], b[-1], buffers=self.grad_buffers, key=-1
        )  # (K, B, n_outputs)
        return out, last_hidden


def _apply_slot(h, j, on, noise, eval_noise):
    if not on:
        return h
    if noise is not None:
        return batched_dropout(h, noise, j)
    if eval_noise is not None:
        s = eval_noise.eval_scale(j)
        if s is not None:
            return h * s.view(-1, *([1] * (h.dim() - 1)))  # (K, B, ...) * (K, 1, ...)
    return h


def member_rates(net, members: list[MemberConfig]) -> list[list[float]]:
    """Per slot, the members' P(drop) (0 where the slot is off)."""
    rates = []
    for s, on in enumerate(net.slot_on):
        r = [(m.input_rate if s == 0 else m.hidden_rate) if on else 0.0 for m in members]
        rates.append(r)
    if net.spec.placement == "none" and any(m.input_rate or m.hidden_rate for m in members):
        raise ValueError("placement='none' has no dropout slots, but a member has a rate > 0")
    return rates


def _optimizer(net, members, cfg: TrainConfig, *, fused: bool | None = None):
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
def max_norm_stacked_(W: torch.Tensor, c: torch.Tensor, dims: tuple[int, ...]) -> None:
    """Max-norm on stacked hidden weights: each unit's incoming vector (``W`` reduced over
    ``dims``: (K, in, out) over (1,), (K, out, in, *k) over (2, ...)) is rescaled to norm
    <= c[k] (``c`` broadcastable, inf for none)."""
    norm = torch.linalg.vector_norm(W, dim=dims, keepdim=True).clamp_min(1e-12)  # (K, 1, out)
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
    net,
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
    """Predictions of the K members whose stacked weights are ``W``, ``b`` (K = ``W[0]``'s
    first dim; ``rates_noise`` and ``mc`` must have the same K) on a shared input ``x``
    (n, ...): class probabilities (K, n, C) or regression outputs (K, n). With ``mc``,
    the average of ``samples`` stochastic forward passes (probabilities averaged)."""
    K = W[0].shape[0]
    # rows per chunk: at most `chunk`, and at most ~32 M activation elements for all K
    chunk = max(1, min(chunk, _EVAL_ELEMENTS // (K * net.row_numel())))
    outs = []
    for s in range(0, x.shape[0], chunk):
        xc = x[s : s + chunk].unsqueeze(0).expand(K, *([-1] * x.dim()))  # (K, c, ...)
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


def make_net(spec: ModelSpec, data, members, device: torch.device):
    """The stacked net for ``spec`` on ``data``'s shapes."""
    dtype = data.x_train.dtype
    if spec.kind == "mlp":
        sizes = [math.prod(data.input_shape), *spec.resolved_widths(), data.n_outputs]
        return StackedMLP(spec, sizes, members, device=device, dtype=dtype)
    return StackedCNN(
        spec, tuple(data.input_shape), data.n_outputs, members, device=device, dtype=dtype
    )


def fit_stacked(
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
    grads: str = "auto",
):
    """Train K members at once; returns the net, its noise and each member's selected
    weights (stacked W, b, all K members in their original order). Metrics go to
    ``tracker`` (``Tracker(K, ..., patience=cfg.patience)``).

    Evaluations (every ``cfg.eval_every`` epochs and at the last) evaluate the
    ``cfg.curve_splits``; splits that are not curve splits (and the train split on all
    rows, where the curves use a subset) are evaluated once at the end on the selected
    weights. With ``cfg.patience``, the members whose patience ran out at an evaluation
    before the last epoch retire: their selected weights are set aside and their rows
    leave every stacked tensor (weights ``(K', ...)``, optimizer state, rates, masks
    streams, data orders), so the next epochs cost what a fit of the K' remaining
    members costs. Retirement changes nothing else for the remaining members: they keep
    their streams, moments and step counts (their numbers agree with a fit without the
    retirement to float tolerance: a batched GEMM's rounding may depend on K).
    ``extra_loss`` then sees the K' training members.

    ``timings``: adds ``train_s``, ``eval_s``, ``train_last_epoch_s`` and
    ``member_steps`` (optimizer steps summed over members: K steps per batch while all
    train).

    ``grads``: "auto" computes a step's gradients with :func:`backprop.mlp_grads` where it
    applies (bit-identical to autograd, less overhead), "autograd" always with autograd.
    """
    if grads not in ("auto", "autograd"):
        raise ValueError(f"grads must be 'auto' or 'autograd', got {grads!r}")
    task = data.task
    net = make_net(spec, data, members, device)
    x_tr = net.prepare(data.x_train.to(device))  # (n, D) or (n, C, *spatial)
    y_tr = data.y_train.to(device)
    n = x_tr.shape[0]
    K_all = K = net.K
    if extra_loss is not None:
        net.fuse = False  # extra_loss reads the last hidden activations before dropout
    rates = member_rates(net, members)
    gauss = [(m.dropout or spec.dropout) == "gaussian" for m in members]
    spatial = spec.kind != "mlp" and spec.dropout == "spatial"
    dropblock = spec.kind != "mlp" and spec.dropout == "dropblock"
    noise_all = noise = MemberNoise(
        [m.seed for m in members],
        rates,
        gauss,
        spatial=[spatial and j > 0 for j in range(len(rates))],
        blocks=[spec.block_size if dropblock and j > 0 else None for j in range(len(rates))],
        scaling=spec.scaling,
        device=device,
        dtype=x_tr.dtype,
        backend={"auto": "auto", "kernel": "kernel", "torch": "torch"}[cfg.masks],
    )
    order = [rng.generator(m.seed, "order") for m in members]
    ramp_base = noise  # the full rates of the training members (cfg.rate_ramp)

    def use_manual() -> bool:  # asked again when the members (and so the noise) change
        return grads == "auto" and backprop.supported(net, noise, x_tr, extra_loss=extra_loss)

    manual = use_manual()
    opt = _optimizer(net, members, cfg, fused=fused)
    net.grad_buffers = GradBuffers()  # each step's gradients are consumed by opt.step
    if isinstance(net, StackedMLP):
        net.eval_buffers = GradBuffers()  # predict consumes each chunk's hidden outputs
    c = [cfg.max_norm if m.max_norm is None else m.max_norm for m in members]
    max_norm = None
    if any(v is not None for v in c):
        max_norm = torch.tensor(
            [math.inf if v is None else v for v in c], device=device, dtype=x_tr.dtype
        ).view(K, 1, 1)
    hidden_keep = torch.tensor([1.0 - r for r in rates[-1]], device=device, dtype=x_tr.dtype)
    full = {
        s: (net.prepare(getattr(data, f"x_{s}").to(device)), getattr(data, f"y_{s}").to(device))
        for s in ("train", "val", "test")
    }
    full["train"] = (x_tr, y_tr)
    stride = train_eval_stride(n, cfg.train_eval_rows)
    # curves: the curve splits, the train split on evenly spaced rows
    splits = {s: full[s] for s in ("train", "val", "test") if s in cfg.curve_splits}
    if "train" in splits:
        splits["train"] = (x_tr[::stride], y_tr[::stride])
    best_W = [w.clone() for w in net.W]
    best_b = [b.clone() for b in net.b]
    active = list(range(K))  # original index of each row of the stacks
    out_W = out_b = None  # (K_all, ...) selected weights once members retire
    timings = {} if timings is None else timings
    timings.setdefault("train_s", 0.0)
    timings.setdefault("eval_s", 0.0)
    timings.setdefault("member_steps", 0.0)
    for epoch in range(1, cfg.epochs + 1):
        t0 = _clock(device)
        if cfg.rate_ramp and epoch <= cfg.rate_ramp:  # Ghiasi et al.'s linear schedule
            f = epoch / cfg.rate_ramp
            noise = noise.with_rates([[r * f for r in slot] for slot in ramp_base.rates])
            manual = use_manual()
        perm = torch.stack([torch.randperm(n, generator=g) for g in order]).to(device)  # (K, n)
        for start in range(0, n, cfg.batch_size):
            idx = perm[:, start : start + cfg.batch_size]  # (K, b)
            flat = idx.reshape(-1)  # index_select: ~2x faster than x_tr[idx] here
            xb = x_tr.index_select(0, flat).view(K, -1, *x_tr.shape[1:])  # (K, b, ...)
            yb = y_tr.index_select(0, flat).view(K, -1)  # (K, b)
            noise.advance()
            if manual:
                step_grads = backprop.mlp_grads(net, xb, yb, noise, task)
            else:
                W = [w.detach().requires_grad_() for w in net.W]
                b = [t.detach().requires_grad_() for t in net.b]
                out, hidden = net.forward(xb, W, b, noise)
                loss = loss_per_member(out, yb, task)  # (K,)
                if extra_loss is not None:
                    loss = loss + extra_loss(hidden, W[-1].transpose(1, 2), out, hidden_keep)
                leaves = [t for pair in zip(W, b) for t in pair]
                step_grads = torch.autograd.grad(loss.sum(), leaves)
            opt.step(step_grads)
            if max_norm is not None:
                net.max_norm_(max_norm)
            timings["member_steps"] += K
        t1 = _clock(device)
        timings["train_s"] += t1 - t0
        timings["train_last_epoch_s"] = t1 - t0
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            res = {
                s: split_metrics(
                    predict(
                        net,
                        x,
                        net.W,
                        net.b,
                        task=task,
                        rates_noise=ramp_base,
                        chunk=cfg.eval_batch,
                    ),
                    y,
                    task,
                )
                for s, (x, y) in splits.items()
            }
            improved = tracker.record(epoch, res, None if K == K_all else active).to(device)
            for dst, src in zip(best_W + best_b, net.W + net.b):
                dst.copy_(torch.where(improved.view(K, *([1] * (dst.dim() - 1))), src, dst))
            retire = [i for i, k in enumerate(active) if tracker.exhausted[k]]
            if retire and epoch < cfg.epochs:
                if out_W is None:
                    out_W, out_b = [w.clone() for w in best_W], [t.clone() for t in best_b]
                for dst, src in zip(out_W + out_b, best_W + best_b):
                    dst[[active[i] for i in retire]] = src[retire]
                keep = [i for i in range(K) if i not in retire]
                if not keep:
                    timings["eval_s"] += _clock(device) - t1
                    break
                # the remaining members' rows of every stacked tensor and stream
                sel = torch.tensor(keep, dtype=torch.long, device=device)
                best_W = [w.index_select(0, sel) for w in best_W]
                best_b = [t.index_select(0, sel) for t in best_b]
                params = opt.compact(keep)
                net.W, net.b = params[0::2], params[1::2]
                net.K = K = len(keep)
                noise = noise.subset(keep)
                ramp_base = noise if not cfg.rate_ramp else ramp_base.subset(keep)
                order = [order[i] for i in keep]
                if max_norm is not None:
                    max_norm = max_norm.index_select(0, sel)
                hidden_keep = hidden_keep.index_select(0, sel)
                active = [active[i] for i in keep]
                net.grad_buffers = GradBuffers()  # the old shapes' memory goes
                if isinstance(net, StackedMLP):
                    net.eval_buffers = GradBuffers()
                manual = use_manual()
            timings["eval_s"] += _clock(device) - t1
    if out_W is not None:  # members retired: the rest's selected weights join theirs
        for dst, src in zip(out_W + out_b, best_W + best_b):
            dst[active] = src
        best_W, best_b = out_W, out_b
        net.W, net.b, net.K = [w.clone() for w in best_W], [t.clone() for t in best_b], K_all
        net.grad_buffers = GradBuffers()
        if isinstance(net, StackedMLP):
            net.eval_buffers = GradBuffers()
    # final metrics of the splits the curves lack (or took on a subset of rows), once,
    # on every member's selected weights
    final = [s for s in ("train", "val", "test") if s not in splits]
    if "train" in splits and stride > 1:
        final.insert(0, "train")
    if final:
        t1 = _clock(device)
        for s in final:
            x, y = full[s]
            out = predict(
                net, x, best_W, best_b, task=task, rates_noise=noise_all, chunk=cfg.eval_batch
            )
            r = split_metrics(out, y, task)
            for k in range(K_all):
                tracker.override(k, {f"{s}_{m}": float(v[k]) for m, v in r.items()})
        timings["eval_s"] += _clock(device) - t1
    return net, noise_all, best_W, best_b
