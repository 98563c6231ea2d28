"""The results store: one SQLite file holding every trial droplab has run.

    >>> from droplab.store import Store
    >>> store = Store("droplab-results/results.db")      # doctest: +SKIP
    >>> store.frame("effect")                             # doctest: +SKIP

A trial is written once, atomically, with its config, seed, metrics, curves, timings,
host and library versions; a re-run skips finished trials, so an interrupted run resumes
where it stopped. See :mod:`droplab.store.sqlite` for the schema.
"""

from __future__ import annotations

from droplab.store.sqlite import (
    APPLICATION,
    SCHEMA_VERSION,
    STATUSES,
    RunLock,
    Store,
    StoreError,
    TrialRecord,
    canonical_json,
    config_hash,
)

__all__ = [
    "APPLICATION",
    "SCHEMA_VERSION",
    "STATUSES",
    "RunLock",
    "Store",
    "StoreError",
    "TrialRecord",
    "canonical_json",
    "config_hash",
]
