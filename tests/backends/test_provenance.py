"""Every stored trial records the code version and torch thread count of the process that
trained it (in process, and in a worker of the process pool)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import fake_study
import pytest
import torch

import droplab
from droplab.backends import run_study
from droplab.backends.common import _code_version, code_version
from droplab.store import Store

STUDY = fake_study.STUDY


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def threads():
    """Restores torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_code_version_of_this_checkout():
    src = Path(droplab.__file__).resolve().parent
    try:
        head = _git(src, "rev-parse", "HEAD")
        _git(src, "ls-files", "--error-unmatch", "__init__.py")
    except (OSError, subprocess.CalledProcessError):
        assert code_version() is None  # not a git checkout (an installed wheel)
        return
    commit, _, dirty = code_version().partition("-")
    assert len(commit) >= 12 and head.startswith(commit) and dirty in ("", "dirty")


@pytest.mark.skipif(
    subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
    reason="git is not installed",
)
def test_code_version_is_the_commit_plus_dirty_for_tracked_changes(tmp_path, monkeypatch):
    pkg = tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    assert _code_version(pkg) is None  # not in a git repository
    _git(tmp_path / "repo", "init", "-q")
    (pkg / "__init__.py").write_text("x = 1\n")
    (tmp_path / "repo" / "README").write_text("a\n")
    assert _code_version(pkg) is None  # the package is not tracked yet
    _git(tmp_path / "repo", "add", ".")
    _git(tmp_path / "repo", "commit", "-q", "-m", "one")
    head = _git(tmp_path / "repo", "rev-parse", "HEAD")
    assert _code_version(pkg) == head[:12]
    (pkg / "new.py").write_text("")  # untracked files do not count
    (tmp_path / "repo" / "README").write_text("b\n")  # nor edits outside the package
    assert _code_version(pkg) == head[:12]
    (pkg / "__init__.py").write_text("x = 2\n")
    assert _code_version(pkg) == head[:12] + "-dirty"
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # git missing: None, no error
    assert _code_version(pkg) is None


def test_in_process_trials_record_this_process(tmp_path, threads):
    torch.set_num_threads(1)
    with Store(tmp_path / "r.db") as store:
        run_study(STUDY, STUDY.expand("quick"), store)
        frame = store.frame("fake")
    assert len(frame) == 18 and set(frame["status"]) == {"finished"}
    assert frame["threads"].tolist() == [1] * 18
    expected = code_version()
    if expected is None:
        assert frame["code_version"].isna().all()
    else:
        assert set(frame["code_version"]) == {expected}


def test_pool_trials_record_the_workers_thread_count(tmp_path, threads):
    # The pool's workers run with cpu_count // workers threads (LocalBackend); the driver
    # is set to another count, so a value taken in the driver would show up here.
    workers = 2
    worker_threads = max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(worker_threads + 1)
    with Store(tmp_path / "r.db") as store:
        run_study(STUDY, STUDY.expand("quick"), store, workers=workers)
        frame = store.frame("fake")
    assert set(frame["status"]) == {"finished"}
    assert frame["threads"].tolist() == [worker_threads] * 18
    expected = code_version()
    assert (
        frame["code_version"].isna().all()
        if expected is None
        else (set(frame["code_version"]) == {expected})
    )
