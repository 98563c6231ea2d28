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
input itself is not counted). Then it times one epoch of a batched MNIST-1D MLP
(K members, 40-256-256-10, bmm) without dropout, with droplab's dropout and with
F.dropout. The last line is the summary:
``dropout: R.Rx torch fwd+bwd at 16M, P% of copy bandwidth fwd, B B/elem saved``.
"""

from __future__ import annotations

import argparse
import itertools
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


# ------------------------------------------------------------ batched MNIST-1D epoch


def mnist1d_train(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        from droplab import data

        ds = data.load("mnist1d", seed=0)
        return ds.x_train.to(device), ds.y_train.to(device), "MNIST-1D (droplab.data)"
    except Exception as err:  # data package unavailable: same shapes, random values
        g = torch.Generator().manual_seed(0)
        x = torch.randn(3600, 40, generator=g)
        y = torch.randint(0, 10, (3600,), generator=g)
        return x.to(device), y.to(device), f"random data of MNIST-1D's shape ({err})"


def epoch_times(device: torch.device, members: int, repeats: int) -> tuple[dict, str]:
    """One epoch (batch 128, Adam) of K MLPs 40-256-256-10 trained together with bmm."""
    x, y, source = mnist1d_train(device)
    sizes = [40, 256, 256, 10]
    g = torch.Generator().manual_seed(0)
    K, B = members, 128
    seeds = torch.arange(K) + 100
    keep_in = torch.full((K, 1, 1), 0.8, device=device)  # input rate 0.2
    keep_h = torch.linspace(0.3, 0.9, K, device=device).view(K, 1, 1)  # hidden rates

    def make():
        ws, bs = [], []
        for i, o in itertools.pairwise(sizes):
            w = (torch.rand(K, i, o, generator=g) * 2 - 1) / i**0.5
            ws.append(w.to(device).requires_grad_(True))
            bs.append(torch.zeros(K, 1, o, device=device, requires_grad=True))
        return ws, bs

    def drop_droplab(h, slot, keep, step):
        return kernels.bernoulli(h, keep, 0, step * 3 + slot, member_seeds=seeds)

    def drop_torch(h, slot, keep, step):
        return (
            F.dropout(h, 1 - float(keep.flatten()[0]), training=True)
            if slot == 0
            else (h * (torch.rand_like(h) < keep) / keep)
        )  # per-member rates in torch: a uniform tensor, a mask and a saved multiplier

    def run_epoch(dropout) -> None:
        ws, bs = make()
        opt = torch.optim.Adam(ws + bs, lr=1e-3)
        perm = torch.randperm(len(x), generator=g).to(device)
        for step, start in enumerate(range(0, len(x), B)):
            idx = perm[start : start + B]
            h = x[idx].expand(K, -1, -1)  # (K, B, 40)
            if dropout:
                h = dropout(h, 0, keep_in, step)
            for j in range(3):
                h = torch.baddbmm(bs[j], h, ws[j])  # (K, B, out_j)
                if j < 2:
                    h = torch.relu(h)
                    if dropout:
                        h = dropout(h, j + 1, keep_h, step)
            loss = F.cross_entropy(h.reshape(-1, 10), y[idx].repeat(K)) * K
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    variants = {"none": None, "droplab": drop_droplab, "torch": drop_torch}
    out = dict.fromkeys(variants, float("inf"))
    for fn in variants.values():  # warm-up: numba compilation / cache load, allocator
        run_epoch(fn)
    for _ in range(repeats):  # interleaved, so a load change on a shared machine hits all
        for name, fn in variants.items():
            sync(device)
            t0 = time.perf_counter()
            run_epoch(fn)
            sync(device)
            out[name] = min(out[name], time.perf_counter() - t0)
    return out, source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="1M,16M,64M")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--epoch-repeats", type=int, default=2)
    args = ap.parse_args()
    device = torch.device(args.device)
    t0 = time.perf_counter()
    sizes = args.sizes.split(",")
    rows = bench_sizes(device, sizes, args.repeats)
    print_table(rows, device)

    ep, source = epoch_times(device, args.members, args.epoch_repeats)
    print(f"\n## Batched epoch: {args.members} members, 40-256-256-10, batch 128, Adam, "
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
