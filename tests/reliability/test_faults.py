"""Faults during ``droplab run``: SIGKILL at random moments, two runs at once, trials that
raise, a disk that fills up. Each run is a real ``droplab.cli.main`` process (see
conftest.Zygote) on the tiny ``rel`` study (rel_study.py); what it leaves in the store is
checked with plain sqlite3, independently of droplab's Store."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from droplab.store import RunLock, Store

from .harness import integrity, one_error_line

SAME = ["hash", "study", "preset", "seed", "status", "x", "arm", "test_error", "test_nll", "curves"]
STATUSES = {"running", "finished", "failed", "unfinished"}


def run_argv(db: Path) -> list:
    return ["run", "rel", "--preset", "quick", "--store", db, "--no-report"]


def table(db: Path) -> pd.DataFrame:
    with Store(db, readonly=True) as store:
        return store.frame("rel")[SAME]


def check_rows(db: Path) -> dict[str, tuple]:
    """The store's invariants after any fault; returns hash -> finished row content.

    integrity_check ok; one row per trial identity (no duplicates under another hash); a
    known status on every row; every finished row complete (finite metrics, curves, times,
    no error) - never half written."""
    assert integrity(db) == "ok"
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT hash, study, preset, config, seed, status, metrics, curves, finished_at,"
            " error FROM trials"
        ).fetchall()
    finally:
        con.close()
    identities = [(r[1], r[2], r[3], r[4]) for r in rows]
    assert len(set(identities)) == len(identities) == len({r[0] for r in rows})
    finished = {}
    for h, _study, _preset, _config, _seed, status, metrics, curves, fin, error in rows:
        assert status in STATUSES, status
        if status == "finished":
            m, c = json.loads(metrics), json.loads(curves)
            assert set(m) == {"test_error", "test_nll"} and all(
                math.isfinite(v) for v in m.values()
            )
            assert len(c["val_error"]) == 4 and fin is not None and error is None
            finished[h] = (metrics, curves, fin)
    return finished


def test_sigkill_at_10_random_moments_resumes_to_the_uninterrupted_table(zygote, tmp_path):
    n_groups = 24  # 96 trials; a killed run gets through at most 2 groups, so all 10 land
    env = {"REL_XS": str(n_groups)}
    ref = zygote.run(run_argv(tmp_path / "ref.db"), env=env)
    assert ref.code == 0, ref.err
    expected = table(tmp_path / "ref.db")
    assert len(expected) == 4 * n_groups and set(expected["status"]) == {"finished"}

    db = tmp_path / "r.db"
    rnd = random.Random(20261127)
    kept: dict[str, tuple] = {}
    moments = []
    for i in range(10):
        if i % 2 == 0:  # inside a store transaction (before COMMIT) or right after it
            k, phase = rnd.randint(1, 3), rnd.choice(["before", "after"])
            pid = zygote.start(run_argv(db), env=env, kill_at_write=k, kill_phase=phase)
            moments.append(f"write {k} {phase} commit")
        else:  # at a random time: setup, a write, the middle of a group, ...
            delay = rnd.uniform(0.0, 0.5)
            pid = zygote.start(run_argv(db), env={**env, "REL_SLEEP": "0.25"})
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            moments.append(f"t={delay:.2f}s")
        result = zygote.wait(pid)
        assert result.code == -signal.SIGKILL, (moments[-1], result.code, result.err)
        finished = check_rows(db)
        for h, content in kept.items():  # nothing finished is ever lost or rewritten
            assert finished.get(h) == content, f"finished trial {h} changed after {moments[-1]}"
        kept = finished
    assert len(kept) < 4 * n_groups  # the kills interrupted the sweep for real
    print(f"sigkill moments: {moments}; finished before the last resume: {len(kept)}")

    final = zygote.run(run_argv(db), env=env)
    assert final.code == 0, final.err
    check_rows(db)
    got = table(db)
    assert len(got) == 4 * n_groups and set(got["status"]) == {"finished"}
    pd.testing.assert_frame_equal(got, expected)
    with Store(db, readonly=True) as store:
        attempts = store.frame("rel")["attempts"]
    assert (attempts > 1).any()  # some trials were running when killed, and re-run


def test_two_runs_at_once_never_duplicate_or_lose_trials(zygote, tmp_path):
    db, log = tmp_path / "r.db", tmp_path / "trained.log"
    first = zygote.start(run_argv(db), env={"REL_SLEEP": "0.1", "REL_LOG": str(log)})
    deadline = time.time() + 30
    while not RunLock.held(db):
        assert time.time() < deadline, "the first run never took the lock"
        time.sleep(0.01)
    second = zygote.run(run_argv(db), env={"REL_LOG": str(log)})
    assert second.code == 2
    line = one_error_line(second)
    assert f"another `droplab run` (pid {first})" in line and str(db) in line
    assert zygote.wait(first).code == 0
    trained = log.read_text().splitlines()
    assert len(trained) == len(set(trained)) == 48  # every trial trained exactly once
    frame = table(db)
    assert len(frame) == 48 and set(frame["status"]) == {"finished"}
    check_rows(db)


def test_two_runs_started_together_on_a_new_store(zygote, tmp_path):
    """Both start in the same millisecond on a store that does not exist yet: one runs,
    the other refuses clearly (never a half-created store or an SQL error)."""
    for attempt in range(3):
        db, log = tmp_path / f"r{attempt}.db", tmp_path / f"trained{attempt}.log"
        env = {"REL_SLEEP": "0.05", "REL_LOG": str(log)}
        pids = [zygote.start(run_argv(db), env=env), zygote.start(run_argv(db), env=env)]
        results = [zygote.wait(p) for p in pids]
        codes = sorted(r.code for r in results)
        assert codes == [0, 2], [(r.code, r.err) for r in results]
        refused = next(r for r in results if r.code == 2)
        assert "another `droplab run`" in one_error_line(refused)
        trained = log.read_text().splitlines()
        assert len(trained) == len(set(trained)) == 48
        check_rows(db)


def test_trials_that_raise_are_stored_as_failed_and_retried(zygote, tmp_path):
    db, log = tmp_path / "r.db", tmp_path / "trained.log"
    failing = zygote.run(run_argv(db), env={"REL_FAIL": "3:nan,5:oom", "REL_LOG": str(log)})
    assert failing.code == 1  # trials failed: not a usage error, not a crash
    assert "Traceback" not in failing.err
    assert "8 trials failed (see `droplab status`)" in failing.err
    with Store(db, readonly=True) as store:
        frame = store.frame("rel")
    failed = frame[frame["status"] == "failed"]
    assert sorted(set(failed["x"])) == [3, 5] and len(failed) == 8
    nan = failed[failed["x"] == 3]["error"]
    oom = failed[failed["x"] == 5]["error"]
    assert nan.str.contains("FloatingPointError: training loss is NaN").all()
    assert oom.str.contains("MemoryError: out of memory").all()
    assert failed["test_error"].isna().all()  # no metrics for a failed trial
    done = frame[frame["status"] == "finished"]
    assert len(done) == 40 and set(done["x"]) == set(range(1, 13)) - {3, 5}  # the sweep went on

    status = zygote.run(["status", "--store", db])
    assert status.code == 0, status.err
    row = next(ln.split() for ln in status.out.splitlines() if ln.split()[:2] == ["rel", "quick"])
    assert row[2:] == ["40", "8", "0", "0", "48"]  # finished failed running unfinished total

    retry = zygote.run(run_argv(db), env={"REL_LOG": str(log)})
    assert retry.code == 0, retry.err
    assert "8 run, 0 failed" in retry.out + retry.err
    trained = log.read_text().splitlines()
    assert len(trained) == 40 + 8  # the retry trained only the failed ones
    with Store(db, readonly=True) as store:
        frame = store.frame("rel")
    assert set(frame["status"]) == {"finished"} and frame["error"].isna().all()
    assert sorted(frame.loc[frame["attempts"] == 2, "x"].unique()) == [3, 5]
    check_rows(db)


def _fill_then_resume(zygote, db: Path, expected: pd.DataFrame, free_space, **limits) -> int:
    """Run until the disk is full; check the error and the store; free space; resume."""
    full = zygote.run(run_argv(db), **limits)
    assert full.code == 2, (full.code, full.err)
    line = one_error_line(full)
    assert str(db) in line and "disk full" in line and "run the same command again" in line
    finished = check_rows(db)  # every trial finished before the disk filled up survived
    assert 0 < len(finished) < 48
    print(f"disk full: {len(finished)} finished trials survived ({line})")
    free_space()
    resumed = zygote.run(run_argv(db))
    assert resumed.code == 0, resumed.err
    pd.testing.assert_frame_equal(table(db), expected)
    return len(finished)


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory) -> pd.DataFrame:
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    ref = zygote.run(run_argv(db))
    assert ref.code == 0, ref.err
    return table(db)


def test_disk_full_file_size_limit_keeps_finished_trials(zygote, tmp_path, reference):
    # RLIMIT_FSIZE for the run: SQLite's writes fail (EFBIG) once the store, its WAL or its
    # shared-memory file would grow past 96 KiB, as on a disk that fills up mid-sweep.
    _fill_then_resume(zygote, tmp_path / "r.db", reference, lambda: None, fsize=96 * 1024)


def test_disk_full_small_tmpfs_keeps_finished_trials(zygote, tmp_path, reference):
    # A real full file system (ENOSPC): a 128 KiB tmpfs, enlarged afterwards ("free space").
    mnt = tmp_path / "small"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)]
    if (
        os.geteuid() != 0
        or shutil.which("mount") is None
        or subprocess.run(mount, capture_output=True).returncode != 0
    ):
        pytest.skip("mounting a tmpfs needs root (the file-size-limit test covers disk full)")
    try:

        def free_space():
            subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)

        _fill_then_resume(zygote, mnt / "r.db", reference, free_space)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
