"""Accuracy anchors: does droplab's trainer reproduce the known MNIST-1D numbers?

MNIST-1D (Greydanus 2020) reports test accuracy ~68% for an MLP and ~94% for its CNN.
This script trains, on ``load("mnist1d")`` (4000 examples: 3600 train, 400 val; 1000
test) with Adam and batch 100:

- MLP 40-256-256-10 without dropout,
- the same MLP with dropout 0.5 on both hidden layers,
- the paper's CNN (3 conv layers of 25 channels, kernels 5/3/3, stride 2, ReLU, linear),

``--seeds`` members each (one batched `fit` per model), and prints a Markdown table of
test accuracy: mean and a 95% t-interval over seeds, at the best-validation epoch and
at the last epoch.

Run:  .venv/bin/python examples/accuracy_anchors.py [--seeds 16] [--epochs 200]
      [--device cpu] [--lr 1e-3] [--cnn-lr 1e-2]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats

from droplab.data import load
from droplab.models import ModelSpec
from droplab.train import MemberConfig, TrainConfig, fit


def ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% t-interval half-width."""
    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return float(a.mean()), math.nan
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a))
    return float(a.mean()), float(half)


def run(name, spec, rate, lr, args, data) -> dict:
    members = [MemberConfig(seed=s, hidden_rate=rate) for s in range(args.seeds)]
    cfg = TrainConfig(epochs=args.epochs, batch_size=100, lr=lr, eval_every=args.eval_every)
    t0 = time.perf_counter()
    res = fit(spec, data, members, cfg, device=args.device)
    secs = time.perf_counter() - t0
    best = [m.metrics["test_acc"] for m in res.members]
    last = [m.curves["test_acc"][-1] for m in res.members]
    peak = [max(m.curves["test_acc"]) for m in res.members]
    train_last = [m.curves["train_acc"][-1] for m in res.members]
    row = {
        "name": name,
        "best": ci(best),
        "last": ci(last),
        "peak": ci(peak),
        "train_last": ci(train_last),
        "seconds": secs,
        "path": res.path,
        "best_epoch": float(np.mean([m.metrics["best_epoch"] for m in res.members])),
    }
    print(
        f"{name}: best-val {row['best'][0]:.3f}, last {row['last'][0]:.3f}, "
        f"{secs:.0f} s ({res.path})",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam lr of the MLPs")
    ap.add_argument("--cnn-lr", type=float, default=1e-2, help="Adam lr of the CNN (paper)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-cnn", action="store_true")
    args = ap.parse_args()
    data = load("mnist1d")
    mlp = ModelSpec("mlp", widths=(256, 256))
    rows = [
        run("MLP 256-256, no dropout", mlp, 0.0, args.lr, args, data),
        run("MLP 256-256, dropout 0.5 (hidden)", mlp, 0.5, args.lr, args, data),
    ]
    if not args.skip_cnn:
        rows.append(run("CNN (MNIST-1D paper)", ModelSpec("cnn1d"), 0.0, args.cnn_lr, args, data))
    print()
    print(
        f"{args.seeds} seeds, {args.epochs} epochs, Adam, batch 100, device {args.device}; "
        "test accuracy, mean ± 95% CI half-width"
    )
    print()
    print(
        "| model | best-val epoch | last epoch | peak over epochs | train (last) | "
        "mean best epoch | wall s |"
    )
    print("|---|---|---|---|---|---|---|")
    f = lambda m: f"{100 * m[0]:.1f} ± {100 * m[1]:.1f}"  # noqa: E731
    for r in rows:
        print(
            f"| {r['name']} | {f(r['best'])} | {f(r['last'])} | {f(r['peak'])} | "
            f"{f(r['train_last'])} | {r['best_epoch']:.0f} | {r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
