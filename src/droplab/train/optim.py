"""SGD (momentum), Adam and AdamW on stacked ``(K, ...)`` parameters, per-member lr and
weight decay.

The math is torch's own (``torch.optim.SGD`` / ``torch.optim.Adam`` / ``torch.optim.AdamW``):

- SGD: ``g <- g + wd p``; ``buf <- g`` (first step) or ``buf <- mu buf + g``;
  ``g <- g + mu buf`` (Nesterov) or ``g <- buf``; ``p <- p - lr g``.
- Adam: ``g <- g + wd p`` (weight decay is *coupled* L2, as in ``torch.optim.Adam``, not
  AdamW's decoupled decay); ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
  ``p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)``.
- AdamW: ``p <- p (1 - lr wd)`` (*decoupled* decay), then the Adam update with ``g``
  itself (no L2 term); amsgrad off, as torch's default.

Members that share (lr, weight decay) are updated by one call of torch's fused kernel
(``torch._fused_adam_`` / ``torch._fused_adamw_`` / ``torch._fused_sgd_``) on the whole stacked tensors, or on the
members' slices when the values differ; on devices without fused kernels a plain
tensor implementation with ``(K, 1, ...)`` hyperparameters does the same math.

:meth:`StackedOptimizer.compact` drops members (rows of every stack and of the state),
for a fit whose members stop at different times.
"""

from __future__ import annotations

import math

import torch

__all__ = ["StackedOptimizer"]


def _fused_works(kind: str, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch's fused kernel of ``kind`` runs here (CPU needs torch >= 2.4)."""
    if device.type not in ("cpu", "cuda"):
        return False
    p, g = torch.zeros(2, device=device, dtype=dtype), torch.zeros(2, device=device, dtype=dtype)
    try:
        if kind in ("adam", "adamw"):
            step = torch.ones((), device=device)
            fn = torch._fused_adam_ if kind == "adam" else torch._fused_adamw_
            fn(
                [p], [g], [torch.zeros_like(p)], [torch.zeros_like(p)], [], [step],
                lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                amsgrad=False, maximize=False,
            )  # fmt: skip
        else:
            torch._fused_sgd_(
                [p], [g], [torch.zeros_like(p)], weight_decay=0.0, momentum=0.9, lr=0.1,
                dampening=0.0, nesterov=False, maximize=False, is_first_step=True,
            )  # fmt: skip
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False
    return True


class StackedOptimizer:
    """Update stacked parameters ``params[i]`` of shape ``(K, ...)`` in place.

    Args:
        params: tensors with the member axis first (not requiring grad; updated in place).
        lrs, weight_decays: per member.
        kind: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        fused: use torch's fused kernels (CPU and CUDA); False forces the plain version.

    State: ``t`` (steps taken, shared by all members: they step together), Adam's
    moments ``m``/``v`` or SGD's momentum ``buf`` (each shaped like its parameter).
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        kind: str,
        lrs: list[float],
        weight_decays: list[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        momentum: float = 0.0,
        nesterov: bool = False,
        fused: bool | None = None,
    ) -> None:
        if kind not in ("adam", "adamw", "sgd"):
            raise ValueError(f"kind must be 'adam', 'adamw' or 'sgd', got {kind!r}")
        self.params, self.kind = params, kind
        self.K = params[0].shape[0]
        self.betas, self.eps, self.momentum, self.nesterov = betas, eps, momentum, nesterov
        dev = params[0].device
        self.fused = _fused_works(kind, dev, params[0].dtype) if fused is None else fused
        self.t = 0
        if kind in ("adam", "adamw"):
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]
        else:
            self.buf = [torch.zeros_like(p) for p in params]
        self._set_hyper(list(lrs), list(weight_decays))

    def _set_hyper(self, lrs: list[float], weight_decays: list[float]) -> None:
        """Per-member lr and weight decay: the fused groups and the plain (K,) columns."""
        dev, dtype = self.params[0].device, self.params[0].dtype
        self.lrs, self.weight_decays = lrs, weight_decays
        # members grouped by equal hyperparameters: one fused call per group
        groups: dict[tuple[float, float], list[int]] = {}
        for k, key in enumerate(zip(lrs, weight_decays)):
            groups.setdefault(key, []).append(k)
        self.groups = [(lr, wd, ks) for (lr, wd), ks in groups.items()]
        # one step counter per group and parameter stack; every member has taken t steps
        self._steps = [
            [torch.full((), float(self.t), dtype=torch.float32, device=dev) for _ in self.params]
            for _ in self.groups
        ]
        col = lambda v: torch.tensor(v, dtype=dtype, device=dev)  # noqa: E731
        self.lr = col(lrs)  # (K,)
        self.wd = col(weight_decays)  # (K,)
        # AdamW's decay factor 1 - lr wd, computed in double as torch.optim.AdamW does
        self.decay = col([1.0 - lr * wd for lr, wd in zip(lrs, weight_decays)])  # (K,)

    @torch.no_grad()
    def compact(self, keep: list[int]) -> list[torch.Tensor]:
        """Keep only members ``keep`` (indices into the current K, in the order given):
        every parameter stack, moment/momentum buffer, lr and weight decay is reduced to
        those rows, and the step count carries over, so each kept member continues
        exactly as before. The stacks become new tensors ``(len(keep), ...)``, returned
        (also ``self.params``); the old ones are no longer updated."""
        if not keep:
            raise ValueError("compact needs at least one member to keep")
        idx = torch.tensor(keep, dtype=torch.long, device=self.params[0].device)
        sel = lambda ts: [t.index_select(0, idx) for t in ts]  # noqa: E731
        self.params = sel(self.params)
        if self.kind in ("adam", "adamw"):
            self.m, self.v = sel(self.m), sel(self.v)
        else:
            self.buf = sel(self.buf)
        self.K = len(keep)
        self._set_hyper([self.lrs[k] for k in keep], [self.weight_decays[k] for k in keep])
        return self.params

    def _select(self, tensors: list[torch.Tensor], ks: list[int]) -> list[torch.Tensor]:
        if len(ks) == self.K:
            return tensors  # the whole stacks
        return [t[k] for t in tensors for k in ks]  # member slices (views)

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """One update from ``grads`` (same shapes as ``params``)."""
        self.t += 1
        if not self.fused:
            self._plain(grads)
            return
        b1, b2 = self.betas
        for (lr, wd, ks), steps in zip(self.groups, self._steps):
            p, g = self._select(self.params, ks), self._select(list(grads), ks)
            if self.kind in ("adam", "adamw"):
                torch._foreach_add_(steps, 1.0)  # one step counter per parameter stack
                st = steps if len(ks) == self.K else [s for s in steps for _ in ks]
                fn = torch._fused_adam_ if self.kind == "adam" else torch._fused_adamw_
                fn(
                    p, g, self._select(self.m, ks), self._select(self.v, ks), [], st,
                    lr=lr, beta1=b1, beta2=b2, weight_decay=wd, eps=self.eps,
                    amsgrad=False, maximize=False,
                )  # fmt: skip
            else:
                torch._fused_sgd_(
                    p, g, self._select(self.buf, ks) if self.momentum else [],
                    weight_decay=wd, momentum=self.momentum, lr=lr, dampening=0.0,
                    nesterov=self.nesterov, maximize=False, is_first_step=self.t == 1,
                )  # fmt: skip

    def _plain(self, grads: list[torch.Tensor]) -> None:
        b1, b2 = self.betas
        for i, (p, g) in enumerate(zip(self.params, grads)):
            shape = (self.K,) + (1,) * (p.dim() - 1)
            lr, wd = self.lr.view(shape), self.wd.view(shape)
            if self.kind == "adamw":
                p.mul_(self.decay.view(shape))  # decoupled: p (1 - lr wd)
            else:
                g = g + wd * p
            if self.kind in ("adam", "adamw"):
                m, v = self.m[i], self.v[i]
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v.sqrt() / math.sqrt(1 - b2**self.t)).add_(self.eps)
                p.sub_(lr / (1 - b1**self.t) * m / denom)
            else:
                if self.momentum:
                    buf = self.buf[i]
                    if self.t == 1:
                        buf.copy_(g)
                    else:
                        buf.mul_(self.momentum).add_(g)
                    g = g + self.momentum * buf if self.nesterov else buf
                p.sub_(lr * g)
