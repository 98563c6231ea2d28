"""Do two replications agree? Compare every contrast of the protocol studies between two
stores (e.g. `droplab run effect rate --seed 0` and `--seed 1`).

Two calls *contradict* when one says lowers and the other raises, or one finds a
difference (lowers/raises) and the other equivalence; any call against "inconclusive" is
no contradiction (one replication saw less). Prints a Markdown table per study and exits
with 1 when a primary contrast contradicts.

Run:  .venv/bin/python examples/replication.py STORE_A STORE_B [--studies effect rate]
"""

from __future__ import annotations

import argparse
import sys

from droplab import studies
from droplab.store import Store
from droplab.studies.base import select_preset


def contradict(a: str, b: str) -> bool:
    """Whether calls ``a`` and ``b`` of one contrast contradict each other."""
    pair = {a, b}
    return pair == {"lowers", "raises"} or (
        "equivalent" in pair and bool(pair & {"lowers", "raises"})
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs=2)
    ap.add_argument("--studies", nargs="+", default=["effect", "rate"])
    args = ap.parse_args()
    bad_primary = False
    for name in args.studies:
        study = studies.get(name)
        found = []
        for path in args.stores:
            with Store(path, readonly=True) as store:
                found.append(study.analyze(select_preset(store.frame(name))))
        a, b = ({c.name: c for c in f.contrasts} for f in found)
        print(f"\n### {name}\n")
        print(f"| contrast | {args.stores[0]} | {args.stores[1]} | agree? |\n|---|---|---|---|")
        for key, ca in a.items():
            cb = b.get(key)
            if cb is None:
                continue
            verdict = "contradict" if contradict(ca.call, cb.call) else "consistent"
            bad_primary |= ca.primary and verdict == "contradict"
            star = " (primary)" if ca.primary else ""
            print(f"| {ca.description}{star} | {ca.short()} | {cb.short()} | {verdict} |")
    return 1 if bad_primary else 0


if __name__ == "__main__":
    sys.exit(main())
