"""Per-call cost of dropout on small tensors: droplab's kernel path vs its torch path.

Run:  .venv/bin/python benchmarks/bench_small.py                (CPU, ~15 s)

For float32 inputs of 1,280 / 12,800 / 102,400 elements (10 / 100 / 800 rows of 128) it
prints the forward and forward+backward microseconds per call of
``droplab.functional.dropout(x, 0.5)`` with ``backend="auto"`` (the counter-hash kernels
of ``droplab.kernels``) and ``backend="torch"`` (``rand < keep``), and of
``torch.nn.functional.dropout``. The input requires grad in both modes (as in training);
fwd+bwd is ``op(x).backward(g)``. Each repeat runs a block of ``--calls`` calls of every
op in turn (interleaved, so a load change on the shared machine hits all ops alike); the
table shows the best repeat's mean per call. One torch thread by default (``--threads``):
on a shared 2-core machine a second thread mostly measures the neighbours' load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from droplab import functional as DF

RATE = 0.5
WIDTH = 128
SIZES = (1_280, 12_800, 102_400)
OPS = {
    'droplab "auto"': lambda t: DF.dropout(t, RATE, backend="auto"),
    'droplab "torch"': lambda t: DF.dropout(t, RATE, backend="torch"),
    "F.dropout": lambda t: F.dropout(t, RATE, training=True),
}


def per_call(fn, calls: int) -> float:
    """Mean seconds per call of ``fn()`` over ``calls`` calls."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def bench(size: int, calls: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{op: (best fwd s, best fwd+bwd s)} for a (size / 128, 128) float32 input."""
    x = torch.randn(size // WIDTH, WIDTH).requires_grad_(True)  # (rows, 128)
    g = torch.randn_like(x)

    def fwd(op):
        return lambda: op(x)

    def fwd_bwd(op):
        def f():
            x.grad = None
            op(x).backward(g)

        return f

    jobs = {(name, mode): make(op) for name, op in OPS.items() for mode, make in
            (("fwd", fwd), ("fwd+bwd", fwd_bwd))}  # fmt: skip
    for fn in jobs.values():  # warm-up: numba compilation / cache load, allocator
        per_call(fn, max(1, calls // 10))
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(repeats):
        for key, fn in jobs.items():
            best[key] = min(best[key], per_call(fn, calls))
    return {name: (best[name, "fwd"], best[name, "fwd+bwd"]) for name in OPS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200, help="calls per timed block")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved blocks per op")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    print(f"\n## Small-tensor dropout: float32 (rows, {WIDTH}), rate {RATE}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeats} "
          f"x {args.calls} calls, us per call\n")  # fmt: skip
    print("| elements | op | fwd us | fwd+bwd us |")
    print("|---:|---|---:|---:|")
    for size in SIZES:
        for name, (f, fb) in bench(size, args.calls, args.repeats).items():
            print(f"| {size:,} | {name} | {f * 1e6:.0f} | {fb * 1e6:.0f} |")
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
