"""Trial identity: what a trial is and the hash that names it in the store.

Owns canonical JSON (one text per value), :func:`config_hash` (a trial's stable name)
and :class:`TrialRecord` (one row of the store as the driver writes it) with its
:data:`STATUSES`.

Both the studies and the store import this module; it imports nothing of droplab, so
neither depends on the other through it. A stored trial is found again by its hash, so
the bytes that go into :func:`config_hash` never change (``tests/store/test_identity.py``
pins them): a different spelling would silently retrain every trial of an existing store.

    >>> config_hash("s", "quick", {"b": [1, 2], "a": 1}, 3)[:12]
    'c5e8000df248'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "STATUSES",
    "TrialRecord",
    "canonical_json",
    "config_hash",
]

STATUSES = ("finished", "failed", "running", "unfinished")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, no whitespace and no NaN: equal values give equal text."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"trial config must be JSON-serializable (str, int, float, bool, None, lists, "
            f"dicts with str keys; no NaN), got {obj!r}: {e}"
        ) from None


def config_hash(study: str, preset: str, config: Mapping[str, Any], seed: int) -> str:
    """The stable identity of a trial: sha256 of the canonical JSON of
    ``{"study", "preset", "config", "seed"}`` (64 hex digits).

    Stable across processes, machines and Python versions (unlike ``hash()``)."""
    text = canonical_json({"study": study, "preset": preset, "config": dict(config), "seed": seed})
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class TrialRecord:
    """One row of the ``trials`` table, as the driver writes it."""

    hash: str
    study: str
    preset: str
    seed: int
    config: dict[str, Any]
    status: str = "running"
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None
    host: str | None = None
    backend: str | None = None
    device: str | None = None
    droplab_version: str | None = None
    torch_version: str | None = None
    python_version: str | None = None
    error: str | None = None
    code_version: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
