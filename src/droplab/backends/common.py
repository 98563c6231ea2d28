"""What runs inside a worker (:func:`execute_group`) and what it sends back (:class:`Outcome`)."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from droplab.store import TrialRecord
from droplab.studies.base import Study, Trial, check_results

__all__ = ["BackendError", "Outcome", "code_version", "execute_group", "failed_outcome"]


class BackendError(ValueError):
    """A backend cannot be used as asked (unknown name, Ray missing or unreachable, bad
    worker count). The message is one line meant for the user."""


@dataclass
class Outcome:
    """The result of one trial group, computed in a worker and stored by the driver.

    ``results`` has one ``{"metrics": ..., "curves": ...}`` per trial, or is None when the
    group failed and ``error`` holds the traceback text. ``versions`` and ``threads`` are
    the worker's (the process that trained the group): library versions, the droplab git
    commit (``versions["code"]``, see :func:`code_version`) and torch's thread count."""

    results: list[dict[str, Any]] | None
    error: str | None
    started_at: float
    finished_at: float
    host: str = field(default_factory=socket.gethostname)
    versions: dict[str, str | None] = field(default_factory=dict)
    threads: int | None = None

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
            "code_version": self.versions.get("code"),
            "threads": self.threads,
        }
        if self.results is None:
            return [t.record(status="failed", error=self.error, **common) for t in group]
        return [
            t.record(status="finished", metrics=r["metrics"], curves=r["curves"], **common)
            for t, r in zip(group, self.results)
        ]


GIT_TIMEOUT_S = 5.0
# Variables that would point git at another repository than the one around ``src``.
_GIT_LOCATION = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"})


def _git(src: Path, *args: str) -> str | None:
    """stdout of ``git -C src ARGS`` (stripped), or None when git is missing, fails or hangs.

    ``GIT_OPTIONAL_LOCKS=0``: ``git status`` must not take ``.git/index.lock`` to refresh
    the index, which would make a commit running beside a study fail."""
    try:
        done = subprocess.run(
            ["git", "-C", str(src), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env={k: v for k, v in os.environ.items() if k not in _GIT_LOCATION}
            | {"GIT_OPTIONAL_LOCKS": "0"},
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def code_version() -> str | None:
    """The git commit of the droplab source this process runs, e.g. ``"7554208c1f0e"``, with
    ``"-dirty"`` appended when tracked files of the droplab package differ from that commit
    (uncommitted edits); None when droplab is not imported from a git checkout (an installed
    wheel) or git is unavailable.

    Computed once per process (three short ``git`` calls, a few ms); never raises."""
    import droplab

    return _code_version(Path(droplab.__file__).resolve().parent)


def _code_version(src: Path) -> str | None:
    """:func:`code_version` of the package folder ``src``."""
    # Only a checkout that tracks droplab's own files counts (not, say, an installed copy
    # inside some other repository's virtual environment).
    if _git(src, "ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return None
    commit = _git(src, "rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    changes = _git(src, "status", "--porcelain", "--untracked-files=no", "--", ".")
    if changes is None:
        return None
    return commit + ("-dirty" if changes else "")


def _versions() -> dict[str, str | None]:
    import torch

    import droplab

    return {
        "droplab": droplab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "code": code_version(),
    }


def execute_group(study: Study, trials: list[Trial], device: str) -> Outcome:
    """Run one group in this process. Exceptions of ``run_group`` become a failed
    :class:`Outcome` (so one bad group never stops a study); KeyboardInterrupt propagates."""
    import torch

    threads = torch.get_num_threads()  # the count this trial trains with, in this process
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
        threads=threads,
    )


def failed_outcome(error: str) -> Outcome:
    """An outcome for a group whose worker died (nothing came back)."""
    now = time.time()
    return Outcome(results=None, error=error, started_at=now, finished_at=now, host="?")
