"""Trial identity: what a trial is and the hash that names it in the store.

Owns :class:`Trial` (one config + one seed of a study), canonical JSON (one text per
value), :func:`config_hash` (a trial's stable name), :func:`config_key` (canonical JSON
of a config minus some keys, for the group keys studies build) and :class:`TrialRecord`
(one row of the store as the driver writes it) with its :data:`STATUSES`.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = [
    "STATUSES",
    "Trial",
    "TrialRecord",
    "canonical_json",
    "config_hash",
    "config_key",
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


def config_key(config: Mapping[str, Any], *, without: Iterable[str] = ()) -> str:
    """Canonical JSON of ``config`` without the keys in ``without``: equal for configs that
    differ only in those keys, so trials that share it can be trained as one group.

        >>> config_key({"rate": 0.5, "lr": 0.1, "arm": "a"}, without=("lr", "arm"))
        '{"rate":0.5}'
    """
    drop = frozenset(without)
    return canonical_json({k: v for k, v in config.items() if k not in drop})


@dataclass(frozen=True)
class Trial:
    """One configuration + one seed of a study: the unit the store keeps.

    Attributes:
        study: the study's registry name.
        config: plain JSON values (str, int, float, bool, None, lists, dicts); read-only by
            convention. Everything that changes the result must be in it.
        seed: the root seed of every random stream of the trial (see :mod:`droplab.rng`).
        preset: the preset that produced the trial (part of the identity, so quick and
            standard results never mix).

    ``trial.hash`` is the stable identity: sha256 of the canonical JSON of
    ``{study, preset, config, seed}``.
    """

    study: str
    config: dict[str, Any]
    seed: int
    preset: str = "standard"

    def __post_init__(self) -> None:
        if not isinstance(self.study, str) or not self.study:
            raise TypeError(f"study must be a non-empty str, got {self.study!r}")
        if not isinstance(self.config, Mapping):
            raise TypeError(f"config must be a dict, got {type(self.config).__name__}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__} {self.seed!r}")
        if not all(isinstance(k, str) for k in self.config):
            raise TypeError(f"config keys must be str, got {list(self.config)!r}")
        # A canonical copy: tuples become lists, so equal configs hash and compare equal.
        object.__setattr__(self, "config", json.loads(canonical_json(dict(self.config))))

    @cached_property
    def hash(self) -> str:
        return config_hash(self.study, self.preset, self.config, self.seed)

    def __hash__(self) -> int:
        return hash(self.hash)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trial) and self.hash == other.hash

    def record(self, **fields: Any) -> TrialRecord:
        """A store row for this trial with the given extra fields (status, metrics, ...)."""
        return TrialRecord(
            hash=self.hash,
            study=self.study,
            preset=self.preset,
            seed=self.seed,
            config=dict(self.config),
            **fields,
        )


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
