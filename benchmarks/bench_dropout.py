"""Speed and memory of droplab's counter-based dropout against torch's F.dropout.

Run:  .venv/bin/python benchmarks/bench_dropout.py            (CPU, ~1-3 min)
      python benchmarks/bench_dropout.py --device cuda         (GPU, if any)

For float32 tensors of 1M, 16M and 64M elements it prints the forward and
forward+backward times (best of several repeats) of torch's ``F.dropout``, of droplab's
fast path (``droplab.kernels.bernoulli``, the op under ``droplab.functional.dropout``)
and of a plain ``y.copy_(x)`` (fwd+bwd of the copy = two copies: the least memory
traffic any mask-free dropout needs), the ratios, the achieved bandwidth (8 bytes per
element: read x, write y) as a fraction of the copy's, and the bytes autograd saves for
backward per element (measured with ``torch.autograd.graph.saved_tensors_hooks``; the
input itself is not counted). Then it times training epochs of droplab's batched trainer
(``droplab.train.fit``: K MNIST-1D MLPs 40-256-256-10, Adam, batch 100) without dropout,
with dropout 0.5 on the hidden units from the counter-hash kernel, and with the trainer's
torch-generator masks. Before the epochs, a small table times fixed-count dropout (rows of
256) of ``droplab.kernels.fixed_count`` against its torch path. The last line is the summary:
``dropout: R.Rx torch fwd+bwd at 16M, P% of copy bandwidth fwd, B B/elem saved``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from droplab import kernels

RATE = 0.5
SIZES = {"1M": 2**20, "16M": 16 * 2**20, "64M": 64 * 2**20}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeats`` runs, after one warm-up."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def saved_bytes_per_element(op, x: torch.Tensor) -> float:
    """Bytes autograd keeps for backward per element of x (tensors other than x)."""
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        if t.data_ptr() != x.data_ptr():
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        op(x)
    return total / x.numel()


OPS = {
    "torch F.dropout": lambda t: F.dropout(t, RATE, training=True),
    "droplab": lambda t: kernels.bernoulli(t, 1 - RATE, 1234, 5),
}


def bench_size(n: int, device: torch.device, reps: int) -> dict:
    """{op: (fwd s, fwd+bwd s, saved B/elem)} and {"copy": (1 copy s, 2 copies s)}."""
    x = torch.randn(n, device=device)
    y = torch.empty_like(x)
    g = torch.randn_like(x)
    xg = x.clone().requires_grad_(True)
    res = {
        "copy": (
            best_time(lambda: y.copy_(x), device, reps),
            best_time(lambda: (y.copy_(x), y.copy_(g)), device, reps),
        ),
        # out-of-place reference: allocates its output like every dropout op does
        "clone": (best_time(lambda: x.clone(), device, reps),),
    }
    for name, op in OPS.items():

        def fwd_bwd(op=op):
            xg.grad = None
            op(xg).backward(g)

        res[name] = (
            best_time(lambda op=op: op(x), device, reps),
            best_time(fwd_bwd, device, reps),
            saved_bytes_per_element(op, xg),
        )
    return res


def bench_sizes(device: torch.device, sizes: list[str], repeats: int) -> dict:
    rows = {}
    for name in sizes:
        n = SIZES[name]
        rows[name] = bench_size(n, device, max(2, repeats // 2) if n >= 64 * 2**20 else repeats)
    return rows


def print_table(rows: dict, device: torch.device) -> None:
    print(f"\n## Dropout kernel: float32, rate {RATE}, device {device}, backend "
          f"{kernels.backend_name(device)}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")  # fmt: skip
    print("| size | op | fwd ms | fwd+bwd ms | fwd GB/s | fwd % of copy_ | fwd % of clone "
          "| fwd+bwd speed-up vs torch | saved B/elem |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for size, res in rows.items():
        n = SIZES[size]
        copy_f, copy_fb = res["copy"]
        clone_f = res["clone"][0]
        torch_fb = res["torch F.dropout"][1]
        for op in ("torch F.dropout", "droplab"):
            f, fb, saved = res[op]
            gbs = 8 * n / f / 1e9
            print(f"| {size} | {op} | {f * 1e3:.2f} | {fb * 1e3:.2f} | {gbs:.1f} | "
                  f"{100 * copy_f / f:.0f}% | {100 * clone_f / f:.0f}% | {torch_fb / fb:.1f}x "
                  f"| {saved:g} |")  # fmt: skip
        print(f"| {size} | y.copy_(x) | {copy_f * 1e3:.2f} | {copy_fb * 1e3:.2f} (2 copies) | "
              f"{8 * n / copy_f / 1e9:.1f} | 100% | | | |")  # fmt: skip
        print(f"| {size} | x.clone() | {clone_f * 1e3:.2f} | | {8 * n / clone_f / 1e9:.1f} | "
              f"{100 * copy_f / clone_f:.0f}% | 100% | | |")  # fmt: skip


# ------------------------------------------------------------ fixed-count dropout

FIXED_N = 256  # units per row: rows of 256 drop exactly round(RATE * 256) each
FIXED_SIZES = ("1M", "16M")


def fixed_count_table(device: torch.device, repeats: int) -> None:
    """fwd and fwd+bwd of ``kernels.fixed_count`` vs the torch path of
    ``droplab.functional.fixed_count_dropout`` (rand + topk + scatter), rows of 256."""
    from droplab import functional as DF

    n_drop = round(RATE * FIXED_N)
    ops = {
        "fixed_count_dropout(backend='torch')": lambda t: DF.fixed_count_dropout(
            t, RATE, backend="torch"
        ),
        "kernels.fixed_count": lambda t: kernels.fixed_count(t, n_drop, 1234, 5),
    }
    print(f"\n## Fixed-count dropout: float32, rows of {FIXED_N}, {n_drop} dropped per row, "
          f"device {device}\n")  # fmt: skip
    print("| size | op | fwd ms | fwd+bwd ms | fwd speed-up | fwd+bwd speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for size in FIXED_SIZES:
        x = torch.randn(SIZES[size] // FIXED_N, FIXED_N, device=device)  # (rows, 256)
        g = torch.randn_like(x)
        xg = x.clone().requires_grad_(True)
        res = {}
        for name, op in ops.items():

            def fwd_bwd(op=op, xg=xg, g=g):
                xg.grad = None
                op(xg).backward(g)

            res[name] = (
                best_time(lambda op=op, x=x: op(x), device, repeats),
                best_time(fwd_bwd, device, repeats),
            )
        ref_f, ref_fb = res["fixed_count_dropout(backend='torch')"]
        for name, (f, fb) in res.items():
            print(f"| {size} | {name} | {f * 1e3:.2f} | {fb * 1e3:.2f} | {ref_f / f:.1f}x | "
                  f"{ref_fb / fb:.1f}x |")  # fmt: skip


# ------------------------------------------------------------ batched MNIST-1D epoch


def epoch_times(device: torch.device, members: int, repeats: int, epochs: int = 2):
    """Training seconds per epoch of droplab's batched trainer (``droplab.train.fit``) on
    MNIST-1D: K MLPs 40-256-256-10, Adam, batch 100, without dropout, with dropout 0.5
    after both hidden layers (counter-hash kernel, the default) and with the trainer's
    torch-generator masks (``TrainConfig(masks="torch")``)."""
    from droplab.data import load
    from droplab.models import ModelSpec
    from droplab.train import MemberConfig, TrainConfig, fit

    data = load("mnist1d")
    spec = ModelSpec("mlp", widths=(256, 256))
    variants = {"none": (0.0, "auto"), "droplab": (0.5, "kernel"), "torch": (0.5, "torch")}

    def run(rate: float, masks: str, n_epochs: int) -> float:
        ms = [MemberConfig(seed=k, hidden_rate=rate) for k in range(members)]
        cfg = TrainConfig(
            epochs=n_epochs, batch_size=100, lr=1e-3, eval_every=n_epochs, masks=masks
        )
        return fit(spec, data, ms, cfg, device=device).timings["train_s"] / n_epochs

    out = dict.fromkeys(variants, float("inf"))
    for rate, masks in variants.values():  # warm-up: numba compilation / cache load
        run(rate, masks, 1)
    for _ in range(repeats):  # interleaved, so a load change on a shared machine hits all
        for name, (rate, masks) in variants.items():
            out[name] = min(out[name], run(rate, masks, epochs))
    return out, "MNIST-1D (droplab.data), droplab.train.fit"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="1M,16M,64M")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--epoch-repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    t0 = time.perf_counter()
    sizes = args.sizes.split(",")
    rows = bench_sizes(device, sizes, args.repeats)
    print_table(rows, device)
    fixed_count_table(device, args.repeats)

    ep, source = epoch_times(device, args.members, args.epoch_repeats)
    print(f"\n## Batched epoch: {args.members} members, 40-256-256-10, batch 100, Adam, "
          f"{source}\n")  # fmt: skip
    print("| dropout | epoch ms | vs no dropout |")
    print("|---|---:|---:|")
    for name, t in ep.items():
        print(f"| {name} | {t * 1e3:.1f} | {100 * (t / ep['none'] - 1):+.0f}% |")
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")

    key = "16M" if "16M" in rows else sizes[0]
    r = rows[key]
    ratio = r["torch F.dropout"][1] / r["droplab"][1]
    pct = 100 * r["copy"][0] / r["droplab"][0]
    saved = r["droplab"][2]
    print(f"dropout: {ratio:.1f}x torch fwd+bwd at {key}, {pct:.0f}% of copy bandwidth fwd, "
          f"{saved:g} B/elem saved")  # fmt: skip


if __name__ == "__main__":
    main()
