"""What runs inside a worker (:func:`execute_group`) and what it sends back (:class:`Outcome`)."""

from __future__ import annotations

import platform
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from droplab.store import TrialRecord
from droplab.studies.base import Study, Trial, check_results

__all__ = ["BackendError", "Outcome", "execute_group", "failed_outcome"]


class BackendError(ValueError):
    """A backend cannot be used as asked (unknown name, Ray missing or unreachable, bad
    worker count). The message is one line meant for the user."""


@dataclass
class Outcome:
    """The result of one trial group, computed in a worker and stored by the driver.

    ``results`` has one ``{"metrics": ..., "curves": ...}`` per trial, or is None when the
    group failed and ``error`` holds the traceback text."""

    results: list[dict[str, Any]] | None
    error: str | None
    started_at: float
    finished_at: float
    host: str = field(default_factory=socket.gethostname)
    versions: dict[str, str] = field(default_factory=dict)

    def records(self, group: list[Trial], *, backend: str, device: str) -> list[TrialRecord]:
        """Store rows for the trials of ``group`` (finished, or failed with the error)."""
        common = {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": self.finished_at - self.started_at,
            "host": self.host,
            "backend": backend,
            "device": device,
            "droplab_version": self.versions.get("droplab"),
            "torch_version": self.versions.get("torch"),
            "python_version": self.versions.get("python"),
        }
        if self.results is None:
            return [t.record(status="failed", error=self.error, **common) for t in group]
        return [
            t.record(status="finished", metrics=r["metrics"], curves=r["curves"], **common)
            for t, r in zip(group, self.results)
        ]


def _versions() -> dict[str, str]:
    import torch

    import droplab

    return {
        "droplab": droplab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def execute_group(study: Study, trials: list[Trial], device: str) -> Outcome:
    """Run one group in this process. Exceptions of ``run_group`` become a failed
    :class:`Outcome` (so one bad group never stops a study); KeyboardInterrupt propagates."""
    started = time.time()
    try:
        results = check_results(study.name, trials, study.run_group(list(trials), device))
        error = None
    except Exception:
        results, error = None, traceback.format_exc(limit=20)
    return Outcome(
        results=results,
        error=error,
        started_at=started,
        finished_at=time.time(),
        versions=_versions(),
    )


def failed_outcome(error: str) -> Outcome:
    """An outcome for a group whose worker died (nothing came back)."""
    now = time.time()
    return Outcome(results=None, error=error, started_at=now, finished_at=now, host="?")
