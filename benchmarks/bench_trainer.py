"""Trainer speed: 16 MNIST-1D MLPs (40-256-256-10, dropout 0.5 on hidden units, Adam,
batch 100), (a) one after another with a plain PyTorch loop, (b) batched by droplab.

(a) and (b) alternate epoch by epoch (a warm-up round, then ``--epochs`` timed pairs),
so each pair ran on the same machine at the same moment: on a shared VM a burst of CPU
steal can stretch any epoch several-fold, and it hurts (a)'s ~30 tiny parallel regions
per step most. It prints seconds per epoch of each (median, fastest, slowest), the
median and range of the paired ratios (a)/(b), and the GFLOP/s of (b)'s median epoch as a
fraction of a float32 matmul measured in the same run. The last line (median pair) reads

    trainer: R.Rx sequential, P% of matmul peak

Run:  .venv/bin/python benchmarks/bench_trainer.py [--epochs 7] [--device cpu] [--threads N]
(the whole run takes well under 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from torch import nn

from droplab import rng
from droplab.data import load
from droplab.models import ModelSpec
from droplab.train import MemberConfig, TrainConfig, fit

K, WIDTH, BATCH, RATE = 16, 256, 100, 0.5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int = 1024, seconds: float = 2.0) -> float:
    """Best float32 GEMM rate (n x n @ n x n) over repeated timings of ~0.2 s each."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        reps = 0
        _sync(device)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.2:
            a @ b
            reps += 1
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


class Sequential:
    """(a): the textbook loop, one model after another (``nn.Sequential``, ``nn.Dropout``,
    ``torch.optim.Adam``). ``epoch()`` trains all K models for one epoch and returns its
    seconds; the models keep training across calls."""

    def __init__(self, data, device: torch.device) -> None:
        self.x, self.y = data.x_train.to(device), data.y_train.to(device)
        self.device = device
        self.models = []
        for k in range(K):
            torch.manual_seed(rng.derive(k, "bench"))  # benchmark script, not library code
            net = nn.Sequential(
                nn.Linear(40, WIDTH), nn.ReLU(), nn.Dropout(RATE),
                nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Dropout(RATE),
                nn.Linear(WIDTH, 10),
            ).to(device)  # fmt: skip
            opt = torch.optim.Adam(net.parameters(), lr=1e-3)
            self.models.append((net, opt, rng.generator(k, "order")))

    def epoch(self) -> float:
        n = self.x.shape[0]
        _sync(self.device)
        t0 = time.perf_counter()
        for net, opt, g in self.models:
            perm = torch.randperm(n, generator=g).to(self.device)
            for s in range(0, n, BATCH):
                idx = perm[s : s + BATCH]
                loss = nn.functional.cross_entropy(net(self.x[idx]), self.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        _sync(self.device)
        return time.perf_counter() - t0


def batched_epoch_s(data, device: torch.device, masks: str = "auto", seed: int = 0) -> float:
    """(b): droplab's fast path (``droplab.train.fit``, K members in one computation)
    trains 2 epochs; the training seconds of the second (a warm epoch, like (a)'s; the
    first epoch of a fresh fit runs ~5% slower; evaluation excluded)."""
    spec = ModelSpec("mlp", widths=(WIDTH, WIDTH))
    members = [MemberConfig(seed=seed * K + k, hidden_rate=RATE) for k in range(K)]
    cfg = TrainConfig(epochs=2, batch_size=BATCH, lr=1e-3, eval_every=2, masks=masks)
    return fit(spec, data, members, cfg, device=device).timings["train_last_epoch_s"]


def profile_batched(data, device: torch.device, masks: str) -> None:
    from torch.profiler import profile as prof

    with prof() as p:
        batched_epoch_s(data, device, masks)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def breakdown(data, device: torch.device, repeats: int = 8) -> dict[str, float]:
    """Fastest-epoch seconds of the batched step with parts removed, interleaved:
    full, without dropout, without dropout and optimizer, and the GEMMs alone (the
    step's 8 batched products at the same shapes, nothing else)."""
    from droplab.train import backprop
    from droplab.train import mlp as M
    from droplab.train.linear import GradBuffers
    from droplab.train.noise import MemberNoise

    x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)
    n = x_tr.shape[0]
    spec = ModelSpec("mlp", widths=(WIDTH, WIDTH))

    def setup(rate: float):
        members = [MemberConfig(seed=k, hidden_rate=rate) for k in range(K)]
        net = M.make_net(spec, data, members, device)
        noise = MemberNoise(
            [m.seed for m in members], M.member_rates(net, members), [False] * K,
            scaling="inverted", device=device,
        )  # fmt: skip
        opt = M._optimizer(net, members, TrainConfig(batch_size=BATCH))
        net.grad_buffers = GradBuffers()  # as fit_stacked
        return net, noise, opt, [rng.generator(m.seed, "order") for m in members]

    def epoch(state, step: bool = True) -> None:
        net, noise, opt, order = state
        manual = backprop.supported(net, noise, x_tr)  # as fit_stacked decides
        perm = torch.stack([torch.randperm(n, generator=g) for g in order]).to(device)
        for s in range(0, n, BATCH):
            idx = perm[:, s : s + BATCH]
            noise.advance()
            if manual:
                grads = backprop.mlp_grads(net, x_tr[idx], y_tr[idx], noise, "classification")
            else:
                W = [w.detach().requires_grad_() for w in net.W]
                b = [t.detach().requires_grad_() for t in net.b]
                out, _ = net.forward(x_tr[idx], W, b, noise)
                loss = M.loss_per_member(out, y_tr[idx], "classification")
                grads = torch.autograd.grad(loss.sum(), [t for p in zip(W, b) for t in p])
            if step:
                opt.step(grads)

    sizes = [40, WIDTH, WIDTH, 10]
    hs = [torch.randn(K, BATCH, i, device=device) for i in sizes[:-1]]
    Ws = [torch.randn(K, i, o, device=device) for i, o in itertools.pairwise(sizes)]
    bs = [torch.randn(K, 1, o, device=device) for o in sizes[1:]]
    gs = [torch.randn(K, BATCH, o, device=device) for o in sizes[1:]]

    ys = [torch.empty(K, BATCH, o, device=device) for o in sizes[1:-1]]
    dWs = [torch.empty_like(w) for w in Ws]
    dhs = [torch.empty_like(h) for h in hs]

    def gemms() -> None:  # the step's products in its layouts, into warm outputs like it
        for _ in range(0, n, BATCH):
            for j in range(2):
                torch.baddbmm(bs[j], hs[j], Ws[j], out=ys[j])
            torch.baddbmm(bs[2].mT, Ws[2].mT, hs[2].mT)  # narrow head: transposed
            torch.bmm(hs[0].mT, gs[0], out=dWs[0])  # dW1 (no input gradient)
            torch.bmm(gs[1], Ws[1].mT, out=dhs[1])
            torch.bmm(hs[1].mT, gs[1], out=dWs[1])
            torch.bmm(gs[2], Ws[2].mT, out=dhs[2])
            torch.bmm(gs[2].mT, hs[2])  # narrow head's dW^T

    full, clean = setup(RATE), setup(0.0)
    parts = {
        "full step": lambda: epoch(full),
        "without dropout": lambda: epoch(clean),
        "without dropout and optimizer": lambda: epoch(clean, step=False),
        "GEMMs alone": gemms,
    }
    best = dict.fromkeys(parts, float("inf"))
    for r in range(repeats + 1):
        for name, fn in parts.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r:  # round 0 warms up
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def flops_per_epoch(n: int) -> float:
    """Dense FLOPs of one epoch of the K MLPs: forward 2*MACs, backward 4*MACs except the
    input gradient of the first layer (not computed), per example and member."""
    macs = [40 * WIDTH, WIDTH * WIDTH, WIDTH * 10]
    per_example = sum(6 * m for m in macs) - 2 * macs[0]
    return float(K * n * per_example)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=7, help="timed pairs of epochs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument(
        "--masks",
        default="auto",
        choices=["auto", "kernel", "torch"],
        help="mask source of the batched path (TrainConfig.masks)",
    )
    ap.add_argument("--profile", action="store_true", help="print a torch profile of (b)")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time (b)'s epoch with parts removed: no dropout, no optimizer, GEMMs alone",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load("mnist1d")
    n = data.x_train.shape[0]
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, n_train {n}, "
        f"{K} MLPs 40-{WIDTH}-{WIDTH}-10, dropout {RATE}, Adam, batch {BATCH}"
    )
    peak = matmul_gflops(device)
    seq = Sequential(data, device)
    seq.epoch()  # warm-up round, not timed
    batched_epoch_s(data, device, args.masks)
    ta, tb = [], []
    for r in range(args.epochs):  # interleaved: each pair of epochs sees the same machine
        ta.append(seq.epoch())
        tb.append(batched_epoch_s(data, device, args.masks, seed=r + 1))
        peak = max(peak, matmul_gflops(device, seconds=0.4))  # the peak: best of all rounds
    ratios = sorted(a / b for a, b in zip(ta, tb))
    ratio = statistics.median(ratios)
    rate = flops_per_epoch(n) / statistics.median(tb) / 1e9
    print(f"float32 matmul (1024^3): {peak:.1f} GFLOP/s (best over the run)")
    print(f"(a) sequential PyTorch loop: median {statistics.median(ta):.3f} s/epoch for {K} "
          f"models (fastest {min(ta):.3f}, slowest {max(ta):.3f})")  # fmt: skip
    print(f"(b) droplab batched:         median {statistics.median(tb):.3f} s/epoch for {K} "
          f"models (fastest {min(tb):.3f}, slowest {max(tb):.3f}), {rate:.1f} GFLOP/s")  # fmt: skip
    print(f"ratio of paired epochs (a)/(b): median {ratio:.1f}x, range "
          f"{ratios[0]:.1f}x-{ratios[-1]:.1f}x over {len(ratios)} pairs")  # fmt: skip
    if args.profile:
        profile_batched(data, device, args.masks)
    if args.breakdown:
        for name, t in breakdown(data, device).items():
            print(f"    (b) {name:30s} {t:.3f} s/epoch (fastest of 8)")
    print(f"trainer: {ratio:.1f}x sequential, {100 * rate / peak:.0f}% of matmul peak")


if __name__ == "__main__":
    main()
