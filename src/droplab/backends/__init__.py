"""Backends execute a study's trial groups; only this driver process writes to the store.

    >>> from droplab.backends import run_study
    >>> summary = run_study(study, study.expand("quick"), store)        # doctest: +SKIP

- ``local`` (default): in this process (``workers=1``) or in a pool of ``workers`` spawned
  processes.
- ``ray``: one Ray task per trial group, on the cluster at ``address`` or on a local Ray
  that the backend starts; a task whose worker died is retried.

Re-running skips finished trials and retries failed and unfinished ones. Ctrl-C
(KeyboardInterrupt) keeps everything finished, marks the trials in flight ``unfinished``
and re-raises; the next run resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from droplab.backends.common import BackendError, Outcome, execute_group
from droplab.store import Store
from droplab.studies.base import Study, Trial

__all__ = [
    "BACKENDS",
    "BackendError",
    "Outcome",
    "RunSummary",
    "execute_group",
    "make_backend",
    "run_study",
]

BACKENDS = ("local", "ray")


@dataclass
class RunSummary:
    """What one :func:`run_study` call did (trial counts)."""

    study: str
    total: int
    skipped: int  # already finished before this run
    finished: int = 0
    failed: int = 0
    seconds: float = 0.0


def make_backend(
    backend: str = "local", *, workers: int = 1, address: str | None = None, device: str = "cpu"
):
    """A backend object with ``run(study, groups, device, on_start)`` yielding
    ``(group, Outcome)`` as groups complete, and ``close()``."""
    if backend not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BackendError(f"workers must be an int >= 1, got {workers!r}")
    if backend == "local":
        if address:
            raise BackendError("--address is for the ray backend; add --backend ray")
        from droplab.backends.local import LocalBackend

        return LocalBackend(workers=workers)
    from droplab.backends.ray import RayBackend

    return RayBackend(address=address, workers=workers, device=device)


def run_study(
    study: Study,
    trials: Sequence[Trial],
    store: Store,
    *,
    backend: str | object = "local",
    workers: int = 1,
    address: str | None = None,
    device: str = "cpu",
    on_progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Run the trials of ``study`` not yet finished in ``store`` and store their results.

    Args:
        study: the study.
        trials: its trials (``study.expand(preset)``).
        store: the store; the caller holds its run lock (``with store.lock(): ...``).
        backend: ``"local"``, ``"ray"``, or a backend object from :func:`make_backend`
            (reused across studies; the caller closes it).
        workers: local: processes (1 = in this process); ray: groups in flight at once.
        address: ray only: the cluster address (``ray://host:10001`` or ``host:6379``).
        device: ``"cpu"`` or ``"cuda"``, passed to ``run_group``.
        on_progress: called as ``on_progress(done, total)`` after each stored group, where
            ``done`` counts trials finished or failed so far, skipped ones included.

    Returns:
        A :class:`RunSummary`.
    """
    t0 = time.time()
    trials = list(trials)
    done_before = store.finished([t.hash for t in trials])
    pending = [t for t in trials if t.hash not in done_before]
    summary = RunSummary(study=study.name, total=len(trials), skipped=len(done_before))
    if on_progress:
        on_progress(summary.skipped, summary.total)
    if not pending:
        return summary
    owned = isinstance(backend, str)
    runner = (
        make_backend(backend, workers=workers, address=address, device=device) if owned else backend
    )
    name = getattr(runner, "name", str(backend))
    in_flight: dict[str, Trial] = {}

    def on_start(group: list[Trial]) -> None:
        store.mark_running([t.record(backend=name, device=device) for t in group])
        in_flight.update((t.hash, t) for t in group)

    try:
        for group, outcome in runner.run(study, study.groups(pending), device, on_start):
            store.record(outcome.records(group, backend=name, device=device))
            for t in group:
                in_flight.pop(t.hash, None)
            if outcome.error is None:
                summary.finished += len(group)
            else:
                summary.failed += len(group)
            if on_progress:
                on_progress(summary.skipped + summary.finished + summary.failed, summary.total)
    except BaseException:
        # Ctrl-C or a crash of the driver: keep what finished, release what was in flight.
        if in_flight:
            store.mark_unfinished(list(in_flight))
        raise
    finally:
        if owned:
            runner.close()
    summary.seconds = time.time() - t0
    return summary
