"""Logistic regression for the explicit study: the data sources and one vectorized trainer.

The model is ``p(y=1 | x) = sigmoid(x . w + b)`` with labels ``y in {0, 1}`` and the mean
logistic loss ``L(w, b) = (1/n) sum_i A(z_i) - y_i z_i``, ``z_i = x_i . w + b``,
``A(z) = log(1 + e^z)``. Dropout acts on the inputs (inverted: ``x~_ij = x_ij m_ij / q``,
``m_ij ~ Bernoulli(q)``, keep ``q = 1 - p``), the only layer there is; weight decay acts on
the same weights ``w``; the bias is neither dropped nor penalized.

The explicit penalty (Wager, Wang & Liang 2013, eq. 6 in their notation): to second order
in the noise, ``E_m L(w~) - L(w) = R(w)`` with

    R(w) = p / (2 q) (1/n) sum_i s_i sum_j x_ij^2 w_j^2,   s_i = A''(z_i) = sigma_i (1 - sigma_i)

an L2 penalty on ``w_j`` weighted by the diagonal Fisher information of feature j (i.e.
L2 after scaling feature j by ``(sum_i s_i x_ij^2)^(1/2)``). Two versions are trained:

- ``explicit``: ``s_i`` at the current ``(w, b)`` (data-dependent, adaptive);
- ``frozen``: ``s_i`` fixed at the start of training, ``w = 0, b = 0``, so ``s_i = 1/4``
  and ``R_0(w) = p / (8 q) sum_j w_j^2 mean_i x_ij^2``: the note's "p(1-p) w I^2" term, a
  fixed per-feature ridge.

Training (every configuration and replicate at once, tensors ``(R, C, ...)``):

- ``sgd``: gradient descent with a fixed diagonal preconditioner P,
  ``w <- w - eta_t P (g + lam w)``. With the decay inside the preconditioner its fixed
  point is exactly ``g + lam w = 0``, the minimizer of ``L + lam/2 ||w||^2``: for SGD
  decoupled weight decay and the L2 penalty coincide (Loshchilov & Hutter 2019). P is the
  Jacobi preconditioner of the curvature bound at w = 0,
  ``H = 1/4 (X^T X / n + p/q diag(X^T X / n)) + lam I`` (the p/q diagonal is the second
  order of dropout and of the penalties), ``P = 1 / diag(H)``, and
  ``eta = 1 / (lambda_max(P^1/2 H P^1/2) + 1)`` (the + 1: the bias, a feature of ones with
  curvature <= 1/4 and step 4 eta).
- ``adamw``: AdamW (betas 0.9, 0.999, eps 1e-8) with decoupled weight decay
  ``w <- w - lr_t (m^ / (sqrt(v^) + eps) + wd w)``.

Both anneal the step size to 0 with a cosine over ``steps`` full-batch steps, so the
iterates settle at the minimizer of the (expected) objective instead of a noise ball.
With dropout each step draws ``k`` fresh masks per example and averages their gradients
(DROPOUT_k of Wei, Kakade & Ma 2020): the expected gradient is that of the exact dropout
objective for every k, its mask noise has 1/k the variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SOURCES",
    "Fit",
    "Source",
    "evaluate",
    "explicit_penalty",
    "sample",
    "train",
]

OPTIMIZERS = ("sgd", "adamw")
PENALTIES = ("none", "explicit", "frozen")


@dataclass(frozen=True)
class Source:
    """A data distribution: ``kind`` and its feature blocks.

    ``binary``: ``d_common`` features active with probability ``p_common`` and weight
    ``+-w_common``, ``d_rare`` features active with probability ``p_rare`` and weight
    ``+-w_rare`` (labels from the logistic model; the logit is centred on its mean).
    ``scales``: Gaussian features, ``d_signal`` of them with standard deviation
    ``s_signal`` and a logit contribution of ``+-w_signal`` per standard deviation,
    ``d_noise`` irrelevant ones with standard deviation ``s_noise``.
    """

    kind: str
    label: str
    d_common: int = 0
    p_common: float = 0.0
    w_common: float = 0.0
    d_rare: int = 0
    p_rare: float = 0.0
    w_rare: float = 0.0
    d_signal: int = 0
    s_signal: float = 1.0
    w_signal: float = 0.0
    d_noise: int = 0
    s_noise: float = 1.0

    @property
    def d(self) -> int:
        return self.d_common + self.d_rare + self.d_signal + self.d_noise


#: The distributions (cells). ``rare``: Wager et al. (2013)'s case for dropout, rare but
#: strongly informative binary features next to common weak ones; dropout's penalty on
#: feature j scales with its activity sum_i x_ij^2, L2's does not. ``small_signal`` and
#: ``large_signal``: two sources on the mechanism behind Helmbold & Long (2015)'s result
#: that some sources favour dropout and others L2: dropout's penalty is invariant to
#: rescaling a feature, L2's is not, so L2 favours features on a large scale. When the
#: informative features are on a small scale L2's bias is wrong (dropout-favoured); when
#: they are on a large scale and the irrelevant ones small, it is right (L2-favoured).
#: ``isotropic``: standardized features, where the two penalties differ only by the
#: per-example Fisher weights s_i.
SOURCES: dict[str, Source] = {
    "rare": Source(
        "binary",
        "rare informative features",
        d_common=50,
        p_common=0.5,
        w_common=0.05,
        d_rare=50,
        p_rare=0.05,
        w_rare=2.5,
    ),
    "small_signal": Source(
        "scales",
        "small-scale informative features (predicted to favour dropout)",
        d_signal=5,
        s_signal=0.1,
        w_signal=1.0,
        d_noise=40,
        s_noise=3.0,
    ),
    "large_signal": Source(
        "scales",
        "large-scale informative features (predicted to favour L2)",
        d_signal=5,
        s_signal=3.0,
        w_signal=1.0,
        d_noise=40,
        s_noise=0.1,
    ),
    "isotropic": Source(
        "scales",
        "standardized features",
        d_signal=5,
        s_signal=1.0,
        w_signal=1.0,
        d_noise=40,
        s_noise=1.0,
    ),
}


def _signs(n: int, g: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (n,), generator=g).double() * 2 - 1


def sample(source: Source, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` examples of ``source``: X (n, d) float32, y (n,) float32 in {0, 1}. The
    teacher (the weight signs) is drawn from ``g`` first, so the same generator state
    gives the same teacher; call with one generator per replicate and split."""
    if source.kind == "binary":
        beta = torch.cat(
            [
                source.w_common * _signs(source.d_common, g),
                source.w_rare * _signs(source.d_rare, g),
            ]
        )
        p = torch.tensor([source.p_common] * source.d_common + [source.p_rare] * source.d_rare)
        X = (torch.rand(n, source.d, generator=g, dtype=torch.float64) < p).double()
        center = float((p.double() * beta).sum())
    elif source.kind == "scales":
        beta = torch.cat(
            [
                source.w_signal / source.s_signal * _signs(source.d_signal, g),
                torch.zeros(source.d_noise, dtype=torch.float64),
            ]
        )
        s = torch.tensor([source.s_signal] * source.d_signal + [source.s_noise] * source.d_noise)
        X = torch.randn(n, source.d, generator=g, dtype=torch.float64) * s.double()
        center = 0.0
    else:
        raise ValueError(f"source kind must be 'binary' or 'scales', got {source.kind!r}")
    logit = X @ beta - center
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(logit)).double()
    return X.float(), y.float()


def explicit_penalty(X: Tensor, w: Tensor, b: Tensor, rate: Tensor, frozen: bool) -> Tensor:
    """R(w) above per (replicate, configuration): X (R, n, d), w (R, C, d), b (R, C),
    rate (R, C) -> (R, C). ``frozen``: s_i = 1/4 (the Fisher weights at w = 0, b = 0)."""
    q = 1.0 - rate
    coef = rate / (2.0 * q)  # (R, C)
    v = torch.einsum("rnd,rcd->rcn", X.pow(2), w.pow(2))  # (R, C, n): sum_j x_ij^2 w_j^2
    if frozen:
        s = torch.full_like(v, 0.25)
    else:
        z = torch.einsum("rnd,rcd->rcn", X, w) + b[..., None]
        sig = torch.sigmoid(z)
        s = sig * (1 - sig)
    return coef * (s * v).mean(-1)


@dataclass
class Fit:
    """Trained weights ``w`` (R, C, d) and biases ``b`` (R, C), and the norm of the final
    (preconditioned, for sgd) gradient of the deterministic objective ``grad_norm``
    (R, C) (NaN for dropout arms, whose objective is an expectation)."""

    w: Tensor
    b: Tensor
    grad_norm: Tensor


def _clean_grad(X: Tensor, y: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    z = torch.einsum("rnd,rcd->rcn", X, w) + b[..., None]
    e = torch.sigmoid(z) - y[:, None, :]  # (R, C, n)
    return torch.einsum("rnd,rcn->rcd", X, e) / X.shape[1], e.mean(-1)


def _dropout_grad(
    X: Tensor, y: Tensor, w: Tensor, b: Tensor, q: Tensor, k: int, g: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The gradient averaged over k inverted-dropout masks per example: (R, C, d), (R, C)."""
    R, n, d = X.shape
    C = w.shape[1]
    keep = q[:, :, None, None, None]  # (R, C, 1, 1, 1)
    m = torch.rand(R, C, k, n, d, generator=g) < keep
    Xt = X[:, None, None] * m / keep  # (R, C, k, n, d)
    z = torch.einsum("rcknd,rcd->rckn", Xt, w) + b[:, :, None, None]
    e = torch.sigmoid(z) - y[:, None, None, :]  # (R, C, k, n)
    return torch.einsum("rcknd,rckn->rcd", Xt, e) / (k * n), e.mean((-1, -2))


def _penalty_grad(
    X: Tensor, w: Tensor, b: Tensor, rate: Tensor, frozen: bool
) -> tuple[Tensor, Tensor]:
    """Gradient of R(w) in w (R, C, d) and b (R, C): with s_i' = s_i (1 - 2 sigma_i),
    dR/dw_j = coef/n sum_i (2 s_i x_ij^2 w_j + s_i' v_i x_ij), dR/db = coef/n sum_i s_i' v_i."""
    coef = rate / (2.0 * (1.0 - rate))  # (R, C)
    X2 = X.pow(2)
    n = X.shape[1]
    if frozen:
        gw = coef[..., None] * 0.5 * X2.mean(1)[:, None, :] * w
        return gw, torch.zeros_like(b)
    z = torch.einsum("rnd,rcd->rcn", X, w) + b[..., None]
    sig = torch.sigmoid(z)
    s = sig * (1 - sig)
    ds = s * (1 - 2 * sig)
    v = torch.einsum("rnd,rcd->rcn", X2, w.pow(2))  # (R, C, n)
    gw = (
        2 * torch.einsum("rnd,rcn->rcd", X2, s) / n * w
        + torch.einsum("rnd,rcn->rcd", X, ds * v) / n
    )
    return coef[..., None] * gw, coef * (ds * v).mean(-1)


def train(
    X: Tensor,
    y: Tensor,
    *,
    optimizer: str,
    steps: int,
    weight_decay: Tensor,
    rate: Tensor,
    penalty: str = "none",
    k: int = 0,
    lr: float = 0.05,
    generator: torch.Generator | None = None,
) -> Fit:
    """Train C configurations on each of R replicates' data at once.

    X (R, n, d), y (R, n); ``weight_decay`` and ``rate`` (R, C): per configuration the
    decoupled weight decay (sgd: lam, adamw: wd) and the dropout rate p (used by dropout
    when ``k >= 1`` and by the penalty when ``penalty`` is not "none"). ``k``: masks per
    step (0: no dropout). ``lr``: AdamW's peak step (sgd uses 1 / L_max).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    if k and penalty != "none":
        raise ValueError(f"dropout (k={k}) and an explicit penalty ({penalty!r}) are exclusive")
    if k and generator is None:
        raise ValueError("dropout (k >= 1) needs a generator for its masks")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    R, n, d = X.shape
    C = rate.shape[1]
    if rate.shape != (R, C) or weight_decay.shape != (R, C):
        raise ValueError(
            f"rate and weight_decay must have shape (R, C) = ({R}, C), got "
            f"{tuple(rate.shape)} and {tuple(weight_decay.shape)}"
        )
    if k or penalty != "none":
        if not bool(((rate > 0) & (rate < 1)).all()):
            raise ValueError("dropout rates must lie in (0, 1)")
    w = torch.zeros(R, C, d)
    b = torch.zeros(R, C)
    regularized = bool(k) or penalty != "none"
    extra = rate / (1 - rate) if regularized else torch.zeros_like(rate)  # (R, C)
    gram = torch.einsum("rnd,rne->rde", X, X) / n  # (R, d, d)
    diag = torch.diagonal(gram, dim1=-2, dim2=-1)  # (R, d): mean_i x_ij^2
    precond = torch.ones(R, C, d)
    if optimizer == "sgd":
        # Jacobi preconditioner of the objective's curvature bound at w = 0:
        # H = 1/4 (X^T X / n + p/q diag(X^T X / n)) + lam I (the dropout and penalty
        # arms' second-order term is the p/q diagonal), P = 1 / diag(H)
        H = 0.25 * (gram[:, None] + (extra[..., None] * diag[:, None])[..., None] * torch.eye(d))
        H = H + weight_decay[..., None, None] * torch.eye(d)  # (R, C, d, d)
        hd = torch.diagonal(H, dim1=-2, dim2=-1)
        precond = torch.where(hd > 1e-12, 1.0 / hd.clamp_min(1e-12), torch.ones_like(hd))
        root = precond.sqrt()
        top = torch.linalg.eigvalsh(root[..., :, None] * H * root[..., None, :])[..., -1]
        # the bias is a feature of ones with curvature <= 1/4, preconditioned by 4; for a
        # PSD block matrix lambda_max <= lambda_max(features) + lambda_max(bias) = top + 1
        eta = 1.0 / (top + 1.0)  # (R, C)
    else:
        m_w, v_w = torch.zeros_like(w), torch.zeros_like(w)
        m_b, v_b = torch.zeros_like(b), torch.zeros_like(b)
    q = 1.0 - rate
    for t in range(steps):
        if k:
            gw, gb = _dropout_grad(X, y, w, b, q, k, generator)
        else:
            gw, gb = _clean_grad(X, y, w, b)
            if penalty != "none":
                pw, pb = _penalty_grad(X, w, b, rate, penalty == "frozen")
                gw, gb = gw + pw, gb + pb
        sched = 0.5 * (1 + math.cos(math.pi * t / steps))
        if optimizer == "sgd":
            step = (eta * sched)[..., None]
            w = w - step * precond * (gw + weight_decay[..., None] * w)
            b = b - 4.0 * eta * sched * gb
        else:
            m_w.mul_(0.9).add_(gw, alpha=0.1)
            v_w.mul_(0.999).addcmul_(gw, gw, value=0.001)
            m_b.mul_(0.9).add_(gb, alpha=0.1)
            v_b.mul_(0.999).addcmul_(gb, gb, value=0.001)
            c1, c2 = 1 - 0.9 ** (t + 1), 1 - 0.999 ** (t + 1)
            a = lr * sched
            w = w - a * ((m_w / c1) / ((v_w / c2).sqrt() + 1e-8) + weight_decay[..., None] * w)
            b = b - a * (m_b / c1) / ((v_b / c2).sqrt() + 1e-8)
    if k:
        grad_norm = torch.full((R, C), math.nan)
    else:
        gw, gb = _clean_grad(X, y, w, b)
        if penalty != "none":
            pw, pb = _penalty_grad(X, w, b, rate, penalty == "frozen")
            gw, gb = gw + pw, gb + pb
        if optimizer == "sgd":
            gw = gw + weight_decay[..., None] * w
            full = torch.cat([gw * precond.sqrt(), gb[..., None]], -1)
            grad_norm = full.norm(dim=-1)
        else:  # AdamW's fixed point is not a zero of the gradient
            grad_norm = torch.full((R, C), math.nan)
    return Fit(w, b, grad_norm)


def evaluate(X: Tensor, y: Tensor, fit: Fit) -> tuple[Tensor, Tensor]:
    """Error rate and mean NLL (nats) of every (replicate, configuration) on (X, y):
    X (R, n, d), y (R, n) -> two (R, C) tensors."""
    z = torch.einsum("rnd,rcd->rcn", X, fit.w) + fit.b[..., None]
    yy = y[:, None, :]
    err = ((z > 0).float() != yy).float().mean(-1)
    nll = (torch.nn.functional.softplus(z) - yy * z).mean(-1)
    return err, nll
