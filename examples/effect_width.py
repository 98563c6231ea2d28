"""Why does `effect`'s tuned estimate differ from docs/accuracy.md's anchor? Width.

docs/accuracy.md measures dropout's gain on MNIST-1D with a 256-256 MLP, hidden dropout
0.5, Adam lr 1e-3, nothing tuned. The `effect` study (standard preset) uses a 100-100 MLP
and tunes both arms. This script trains `effect`'s arms (tuned none, the three tuned
placements, the note's recipe, accuracy.md's recipe and the untuned no-dropout recipe) at
n=3600 with other hidden widths, on the same replicates (the same data draws, splits and
seeds as `effect`'s root seed), into the given store, and prints per width:

- tuned dropout − tuned none (effect's primary contrast),
- accuracy.md's recipe (hidden 0.5, lr 1e-3) − the same recipe without dropout,
- the untuned no-dropout recipe − tuned none (what tuning buys the baseline).

Width 100 at n=3600 is `effect`'s own cell: with the store of a `droplab run effect`
those trials are already there and are not trained again.

Run:  .venv/bin/python examples/effect_width.py --store STORE [--widths 100 256] [--seed 0]
      [--replicates R]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from droplab.backends import run_study
from droplab.store import Store
from droplab.studies import effect
from droplab.studies import protocol as P

NAMES = ("dropout_vs_none", "anchor_vs_plain", "plain_vs_none")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="results store (effect's, to reuse width 100)")
    ap.add_argument("--widths", type=int, nargs="+", default=[100, 256])
    ap.add_argument("--seed", type=int, default=0, help="root seed (as droplab run --seed)")
    ap.add_argument(
        "--replicates", type=int, default=None, help="the first R replicates (default: all)"
    )
    args = ap.parse_args()
    p = effect.PRESETS["standard"]
    budget = p["budget"]
    if args.replicates is not None:  # the first R replicates: the same seeds as effect's
        budget = dataclasses.replace(budget, seeds=args.replicates)
    n = max(p["sizes"])
    trials = []
    for w in args.widths:
        label = "" if w == p["widths"][0] else f"width {w}"
        cell = P.Cell(p["dataset"], n, (w, w), effect.ALL, label)
        trials += P.expand(
            "effect", "standard", args.seed, effect._arms(budget.configs), [cell], budget
        )
    t0 = time.time()
    with Store(args.store) as store:
        summary = run_study(effect.STUDY, trials, store)
        frame = store.frame("effect", preset="standard", status="finished")
    print(
        f"{summary.finished} trained, {summary.skipped} already stored ({time.time() - t0:.0f} s)"
    )
    frame = frame[(frame["n_train"] == n) & (frame["root_seed"] == args.seed)]
    print("| width | " + " | ".join(NAMES) + " |\n|---|" + "---|" * len(NAMES))
    for w in args.widths:
        rows = frame[frame["widths"].apply(lambda x, w=w: tuple(x) == (w, w))]
        f = effect.analyze(rows.assign(cell=""))
        by = {c.name: c for c in f.contrasts}
        cells = [f"{by[k].short()} (n={by[k].n_seeds})" if k in by else "n/a" for k in NAMES]
        print(f"| {w} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
