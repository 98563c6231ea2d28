"""The results store: one SQLite file holding every trial droplab has run.

    >>> from droplab.store import Store
    >>> store = Store("droplab-results/results.db")      # doctest: +SKIP
    >>> store.frame("effect")                             # doctest: +SKIP

A trial is written once, atomically, with its config, seed, metrics, curves, timings,
host and library versions; a re-run skips finished trials, so an interrupted run resumes
where it stopped.

Modules, each with one job: :mod:`~droplab.store.identity` (a trial, canonical JSON and
the hash that names it), :mod:`~droplab.store.sqlite` (:class:`Store`, the read/write
API), :mod:`~droplab.store.schema` (the file format: schema, migrations, creation and
checks), :mod:`~droplab.store.lock` (:class:`RunLock`, one run at a time) and
:mod:`~droplab.store.errors` (:class:`StoreError`, SQLite's errors in one line).
"""

from __future__ import annotations

from droplab.store.errors import StoreError
from droplab.store.identity import STATUSES, TrialRecord, canonical_json, config_hash, config_key
from droplab.store.lock import RunLock
from droplab.store.schema import APPLICATION, SCHEMA_VERSION
from droplab.store.sqlite import Store

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
    "config_key",
]
