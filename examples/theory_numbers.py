"""Every number in docs/theory.md, recomputed: closed forms vs Monte Carlo with droplab masks.

Run:  OMP_NUM_THREADS=1 .venv/bin/python examples/theory_numbers.py   (< 1 min on one core)
      add ``--update-doc docs/theory.md`` to paste this run's output into the doc's blocks.

Seeds are fixed (droplab.rng), so the output is the same on every run on one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from pathlib import Path

import torch

import droplab as dl
from droplab import functional as F
from droplab import rng
from droplab.theory import (
    ExplicitDropoutPenalty,
    gaussian_sigma,
    gradient_decomposition,
    linear_dropout_solution,
    linear_expected_grad,
    linear_expected_loss,
    linear_gradient_moments,
    logistic_dropout_penalty,
    logistic_expected_loss_exact,
    logistic_expected_loss_mc,
    logistic_loss,
)

torch.set_default_dtype(torch.float64)
S = 50_000  # masks per Monte Carlo estimate


def mc(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return v.mean(0), v.std(0) / v.shape[0] ** 0.5


def regression_problem():
    g = rng.generator(0, "theory-doc", "regression")
    X = torch.randn(20, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5])  # (n=20, d=3)
    y = X @ torch.tensor([1.0, -1.0, 2.0]) + 0.5 * torch.randn(20, generator=g)
    w = torch.tensor([0.8, -0.6, 1.5])
    return X, y, w


def section(title: str) -> None:
    print(f"## {title}")


def linear_checks(X, y, w) -> None:
    section("1. linear regression: E||y - X~ w||^2, closed form vs MC (droplab masks)")
    gamma2 = torch.diagonal(X.T @ X)
    print(
        f"||y - Xw||^2 = {float((y - X @ w).pow(2).sum()):.4f}   "
        f"||Gamma w||^2 = {float((gamma2 * w * w).sum()):.4f}"
    )
    print("scaling   keep  closed_form   MC_mean ± stderr      z")
    for scaling in ("inverted", "classic"):
        for keep in (0.2, 0.5, 0.8):
            g = rng.generator(1, "theory-doc", scaling, str(keep))
            Xt = F.dropout(X.expand(S, *X.shape), keep=keep, scaling=scaling, generator=g)
            m, se = mc((y - Xt @ w).pow(2).sum(1))  # (S,) -> scalar
            exact = float(linear_expected_loss(X, y, w, keep, scaling))
            print(
                f"{scaling:9s} {keep:4.1f} {exact:12.4f} {float(m):10.4f} ± {float(se):6.4f}"
                f" {float((m - exact) / se):+6.2f}"
            )


def note_formula(X, y, w) -> None:
    section("2. the note's formula: E grad - grad of the eval network, classic scaling")
    keep = 0.5
    g = rng.generator(2, "theory-doc", "note")
    Xt = F.dropout(X.expand(S, *X.shape), keep=keep, scaling="classic", generator=g)
    grad = -2.0 * (Xt * (y - Xt @ w).unsqueeze(-1)).sum(1)  # (S, d) grads of ||y - X~ w||^2
    m, se = mc(grad)
    gamma2 = torch.diagonal(X.T @ X)
    mean_net = -2.0 * keep * X.T @ (y - keep * X @ w)  # gradient of ||y - keep X w||^2
    full_net = -2.0 * X.T @ (y - X @ w)  # gradient of ||y - X w||^2 (no dropout at all)
    note = keep * (1 - keep) * gamma2 * w  # p(1-p) w I^2, I^2 = sum_i x_ij^2
    fmt = lambda v: "[" + ", ".join(f"{float(x):8.3f}" for x in v) + "]"  # noqa: E731
    print(f"MC  E grad - grad(mean network)  = {fmt(m - mean_net)}  (stderr {fmt(se)})")
    print(f"    2 p(1-p) Gamma^2 w           = {fmt(2 * note)}")
    print(f"    note: p(1-p) Gamma^2 w       = {fmt(note)}")
    print(f"MC  E grad - grad(full network)  = {fmt(m - full_net)}")
    print(f"ratio MC / note-formula          = {fmt((m - mean_net) / note)}")


def coefficient_table(X, y) -> None:
    section("3. where p enters: penalty on training vs test-time weights, dropout solution")
    print("keep  p(1-p)  (1-p)/p  ||v*|| (test-time weights)  train MSE of v*")
    for keep in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
        v = linear_dropout_solution(X, y, keep)  # inverted = classic solution * keep
        mse = float((y - X @ v).pow(2).mean())
        print(
            f"{keep:4.1f}  {keep * (1 - keep):6.3f}  {(1 - keep) / keep:7.3f}"
            f"  {float(v.norm()):10.4f}                   {mse:8.4f}"
        )
    print(f"(1-p)/p at keep 0.3 over keep 0.7: {(0.7 / 0.3) / (0.3 / 0.7):.2f}x")


def gaussian_checks(X, y, w) -> None:
    section("4. Gaussian N(1, sigma^2), sigma^2 = (1-keep)/keep, vs inverted Bernoulli")
    print("keep  sigma   E loss Bernoulli (exact)   E loss Gaussian MC ± se       z")
    for keep in (0.5, 0.8):
        sigma = gaussian_sigma(keep)
        g = rng.generator(3, "theory-doc", "gauss", str(keep))
        Xt = F.gaussian_dropout(X.expand(S, *X.shape), sigma=sigma, generator=g)
        m, se = mc((y - Xt @ w).pow(2).sum(1))
        exact = float(linear_expected_loss(X, y, w, keep))
        print(
            f"{keep:4.1f} {sigma:6.3f} {exact:18.4f} {float(m):20.4f} ± {float(se):6.4f}"
            f" {float((m - exact) / se):+6.2f}"
        )
    keep = 0.5
    sigma = gaussian_sigma(keep)
    gauss = linear_gradient_moments(X, y, w, sigma=sigma)
    bern = linear_gradient_moments(X, y, w, keep)
    fmt = lambda v: "[" + ", ".join(f"{float(x):8.3f}" for x in v) + "]"  # noqa: E731
    print(f"keep=0.5, sigma=1: clean grad          = {fmt(gauss.clean)}")
    print(f"  E grad - clean (Gaussian, exact)    = {fmt(gauss.bias)}  = 2 sigma^2 Gamma^2 w")
    print(f"  E grad - clean (Bernoulli, exact)   = {fmt(bern.bias)}")
    # first-order (linear in the noise eps = xi - 1) part of the gradient: mean zero
    g = rng.generator(4, "theory-doc", "first-order")
    eps = F.gaussian_dropout(torch.ones(S, *X.shape), sigma=sigma, generator=g) - 1.0
    r0 = y - X @ w
    first = 2.0 * ((X.unsqueeze(0) * (((X * eps) @ w).unsqueeze(-1))).sum(1)) - 2.0 * (
        (X * eps) * r0.unsqueeze(-1)
    ).sum(1)  # (S, d): 2 X^T (X*eps) w - 2 (X*eps)^T r0
    second = 2.0 * ((X * eps) * ((X * eps) @ w).unsqueeze(-1)).sum(1)  # (S, d)
    m1, se1 = mc(first)
    m2, se2 = mc(second)
    print(f"  MC mean of first-order term         = {fmt(m1)}  (stderr {fmt(se1)})")
    print(f"  MC mean of second-order term        = {fmt(m2)}  (stderr {fmt(se2)})")
    print(
        f"  noise trace Cov(grad): Gaussian {gauss.noise_trace:.2f}, "
        f"Bernoulli {bern.noise_trace:.2f} (exact)"
    )
    print(
        f"  E xi^4: Bernoulli 1/keep^3 = {1 / keep**3:.0f}, Gaussian 1 + 6 s^2 + 3 s^4 = "
        f"{1 + 6 * sigma**2 + 3 * sigma**4:.0f}; trace ratio {gauss.noise_trace / bern.noise_trace:.2f}"
    )


def sgd_check(X, y) -> None:
    section("5. SGD with droplab masks (minibatch 5, lr 0.02, 32 chains) -> dropout solution")
    keep, C, B, T, burn, lr = 0.5, 32, 5, 4000, 500, 0.02
    n, d = X.shape
    g = rng.generator(5, "theory-doc", "sgd")
    masks = rng.generator(5, "theory-doc", "sgd", "masks")
    w = torch.zeros(C, d)
    total = torch.zeros(C, d)
    for t in range(burn + T):
        idx = torch.randint(0, n, (C, B), generator=g)  # (C, B)
        Xb = F.dropout(X[idx], keep=keep, generator=masks)  # (C, B, d)
        r = y[idx] - (Xb @ w.unsqueeze(-1)).squeeze(-1)  # (C, B)
        w = w - lr * (-2.0 * (Xb * r.unsqueeze(-1)).mean(1))
        if t >= burn:
            total += w
    avg, se = mc(total / T)
    fmt = lambda v: "[" + ", ".join(f"{float(x):8.4f}" for x in v) + "]"  # noqa: E731
    print(f"averaged SGD iterate  = {fmt(avg)}  (stderr {fmt(se)})")
    print(f"linear_dropout_solution = {fmt(linear_dropout_solution(X, y, keep))}")
    print(f"least squares (keep=1)  = {fmt(linear_dropout_solution(X, y, 1.0))}")
    print(f"z = (avg - w*)/stderr   = {fmt((avg - linear_dropout_solution(X, y, keep)) / se)}")


def logistic_checks() -> None:
    section("6. logistic regression: Wager et al. quadratic penalty vs exact (all 2^d masks)")
    g = rng.generator(6, "theory-doc", "logistic")
    X = torch.randn(30, 6, generator=g)
    w_base = torch.randn(6, generator=g)
    y = (torch.rand(30, generator=g) < torch.sigmoid(X @ w_base)).double()
    print("scale  keep  exact E loss  clean+penalty  rel.err of penalty   MC ± stderr (20k)")
    for scale in (0.25, 1.0, 2.0):
        w = scale * w_base
        for keep in (0.5, 0.8):
            exact = float(logistic_expected_loss_exact(X, y, w, keep))
            clean = float(logistic_loss(X, y, w))
            pen = float(logistic_dropout_penalty(X, w, keep))
            m, se = logistic_expected_loss_mc(
                X, y, w, keep, samples=20_000, generator=rng.generator(7, str(scale), str(keep))
            )
            rel = (clean + pen - exact) / (exact - clean)
            print(
                f"{scale:5.2f} {keep:5.1f} {exact:12.4f} {clean + pen:13.4f} {rel:+18.1%}"
                f"   {m:8.4f} ± {se:.4f}"
            )


def explicit_checks() -> None:
    section("7. ExplicitDropoutPenalty on a last hidden layer (B=32, H=16, O=4)")
    g = rng.generator(8, "theory-doc", "explicit")
    h = torch.relu(torch.randn(32, 16, generator=g))  # (B, H)
    W = torch.randn(4, 16, generator=g) / 4  # (O, H)
    b = torch.randn(4, generator=g)
    yreg = torch.randn(32, 4, generator=g)
    labels = torch.randint(0, 4, (32,), generator=g)
    n = 20_000
    print("loss           keep  penalty   MC E[loss(dropout)] - loss(clean) ± stderr")
    for keep in (0.5, 0.8):
        ht = F.dropout(h.expand(n, 32, 16), keep=keep, generator=rng.generator(9, str(keep)))
        zt, z = ht @ W.T + b, h @ W.T + b  # (n, B, O), (B, O)
        sq = (yreg - zt).pow(2).sum(-1).mean(-1) - (yreg - z).pow(2).sum(-1).mean()
        m, se = mc(sq)
        pen = float(ExplicitDropoutPenalty("squared")(h, W, None, keep))
        print(f"squared (exact) {keep:4.1f} {pen:8.4f}   {float(m):8.4f} ± {float(se):.4f}")
        ce = torch.nn.functional.cross_entropy
        lt = ce(zt.reshape(-1, 4), labels.repeat(n), reduction="none").reshape(n, 32).mean(1)
        first = ((zt - z) * (torch.softmax(z, -1) - torch.eye(4)[labels])).sum(-1).mean(-1)
        m, se = mc(lt - ce(z, labels) - first)  # minus a mean-zero control variate
        pen = float(ExplicitDropoutPenalty("cross_entropy")(h, W, z, keep))
        print(
            f"cross-entropy   {keep:4.1f} {pen:8.4f}   {float(m):8.4f} ± {float(se):.4f}"
            f"   rel.err {pen / float(m) - 1:+.1%}"
        )


def mlp_decomposition() -> None:
    section("8. gradient_decomposition of a trained MLP: Bernoulli vs matched Gaussian dropout")
    g = rng.generator(10, "theory-doc", "mlp")
    x = torch.randn(64, 10, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()  # 3 classes
    keep = 0.5
    torch.manual_seed(rng.derive(10, "init"))  # a script, not library code
    net = torch.nn.Sequential(
        torch.nn.Linear(10, 32), torch.nn.ReLU(), dl.Dropout(keep=keep), torch.nn.Linear(32, 3)
    )
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    masks = rng.generator(10, "train-masks")
    for _ in range(300):  # train with Bernoulli dropout (full batch)
        h = F.dropout(net[1](net[0](x)), keep=keep, generator=masks)
        loss = torch.nn.functional.cross_entropy(net[3](h), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"trained 300 Adam steps with dropout, final dropout loss {loss.item():.3f}")
    print("dropout    ||clean||  ||E grad - clean|| (±se-norm)   trace Cov ± stderr")
    traces = []
    for name, layer in (
        ("bernoulli", dl.Dropout(keep=keep)),
        ("gaussian", dl.GaussianDropout(sigma=gaussian_sigma(keep))),
    ):
        net[2] = layer  # same trained weights, different noise
        dec = gradient_decomposition(
            net, torch.nn.functional.cross_entropy, (x, y), 1000, seed=rng.derive(11, "mlp")
        )
        se_norm = float(dec.bias_stderr.norm())
        traces.append(dec.noise_trace)
        print(
            f"{name:9s} {dec.clean_norm:9.4f} {dec.bias_norm:12.4f} (±{se_norm:.4f})"
            f" {dec.noise_trace:16.4f} ± {dec.noise_trace_stderr:.4f}"
        )
    print(f"noise trace ratio Gaussian / Bernoulli: {traces[1] / traces[0]:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--update-doc",
        metavar="PATH",
        help="also rewrite the '<!-- theory_numbers N -->' blocks of PATH (docs/theory.md) "
        "with this run's output of section N",
    )
    args = parser.parse_args(argv)
    X, y, w = regression_problem()
    steps = [
        lambda: linear_checks(X, y, w),
        lambda: note_formula(X, y, w),
        lambda: coefficient_table(X, y),
        lambda: gaussian_checks(X, y, w),
        lambda: sgd_check(X, y),
        logistic_checks,
        explicit_checks,
        mlp_decomposition,
    ]
    outputs = {}
    for number, step in enumerate(steps, start=1):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            step()
        outputs[number] = buffer.getvalue().strip("\n")
        print("\n" + outputs[number], flush=True)
    # the exact gradient used throughout equals autograd of the exact loss
    wg = w.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(linear_expected_loss(X, y, wg, 0.5), wg)
    assert torch.allclose(auto, linear_expected_grad(X, y, w, 0.5))
    if args.update_doc:
        update_doc(Path(args.update_doc), outputs)


def update_doc(path: Path, outputs: dict[int, str]) -> None:
    """Replace each block between '<!-- theory_numbers N -->' and '<!-- /theory_numbers -->'."""
    text = path.read_text()

    def block(match: re.Match) -> str:
        body = "\n".join(
            "    " + line if line else "" for line in outputs[int(match[1])].splitlines()
        )
        return f"{match[0].splitlines()[0]}\n\n{body}\n\n<!-- /theory_numbers -->"

    new, count = re.subn(
        r"<!-- theory_numbers (\d+) -->.*?<!-- /theory_numbers -->", block, text, flags=re.S
    )
    path.write_text(new)
    print(f"\nupdated {count} blocks in {path}")


if __name__ == "__main__":
    main()
