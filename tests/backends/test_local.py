"""The local backend and the driver loop: skip finished, retry failed, Ctrl-C, dead workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import fake_study
import pandas as pd
import pytest

from droplab.backends import BackendError, make_backend, run_study
from droplab.backends.ray import import_ray
from droplab.store import Store

STUDY = fake_study.STUDY
RESULT_COLUMNS = ["hash", "seed", "status", "arm", "x", "test_error", "curves"]


def results(store: Store) -> pd.DataFrame:
    return store.frame("fake")[RESULT_COLUMNS]


def test_run_stores_all_and_rerun_does_no_work(tmp_path, monkeypatch):
    log = tmp_path / "trained.log"
    monkeypatch.setenv("FAKE_STUDY_LOG", str(log))
    trials = STUDY.expand("quick")
    seen = []
    with Store(tmp_path / "r.db") as store:
        summary = run_study(STUDY, trials, store, on_progress=lambda d, t: seen.append((d, t)))
        assert (summary.total, summary.skipped, summary.finished, summary.failed) == (18, 0, 18, 0)
        assert seen == [(0, 18), (6, 18), (12, 18), (18, 18)]
        frame = store.frame("fake")
        assert set(frame["status"]) == {"finished"} and len(frame) == 18
        assert set(frame["backend"]) == {"local"} and frame["torch_version"].notna().all()
        again = run_study(STUDY, trials, store)
    assert (again.skipped, again.finished) == (18, 0)
    assert len(log.read_text().splitlines()) == 18  # the second run trained nothing


def test_failed_group_is_stored_then_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STUDY_FAIL", "2")
    trials = STUDY.expand("quick")
    with Store(tmp_path / "r.db") as store:
        summary = run_study(STUDY, trials, store)
        assert (summary.finished, summary.failed) == (12, 6)
        frame = store.frame("fake")
        failed = frame[frame["status"] == "failed"]
        assert set(failed["x"]) == {2}
        assert failed["error"].str.contains("RuntimeError: fake failure in group x=2").all()
        monkeypatch.delenv("FAKE_STUDY_FAIL")
        retry = run_study(STUDY, trials, store)
        assert (retry.skipped, retry.finished, retry.failed) == (12, 6, 0)
        assert set(store.frame("fake")["status"]) == {"finished"}


def test_keyboard_interrupt_keeps_finished_and_resumes_to_the_same_results(tmp_path):
    trials = STUDY.expand("quick")
    with Store(tmp_path / "ref.db") as ref:
        run_study(STUDY, trials, ref)
        expected = results(ref)

    def interrupt(done, total):
        if done >= 6:
            raise KeyboardInterrupt

    with Store(tmp_path / "r.db") as store:
        with pytest.raises(KeyboardInterrupt):
            run_study(STUDY, trials, store, on_progress=interrupt)
        frame = store.frame("fake")
        assert (frame["status"] == "finished").sum() == 6
        assert "running" not in set(frame["status"])
        run_study(STUDY, trials, store)
        pd.testing.assert_frame_equal(results(store), expected)


def test_process_pool_equals_in_process_and_survives_a_dead_worker(tmp_path, monkeypatch):
    trials = STUDY.expand("quick")
    with Store(tmp_path / "one.db") as one:
        run_study(STUDY, trials, one)
        expected = results(one)
    exit_file = Path(os.environ["FAKE_STUDY_CONTROL"]) / "exit"
    exit_file.write_text("1")  # the worker running group x=1 dies
    with Store(tmp_path / "pool.db") as pool:
        summary = run_study(STUDY, trials, pool, workers=2)
        assert (summary.finished, summary.failed) == (12, 6)
        frame = pool.frame("fake")
        dead = frame[frame["status"] == "failed"]
        assert set(dead["x"]) == {1} and dead["error"].str.contains("worker process died").all()
        exit_file.unlink()
        run_study(STUDY, trials, pool, workers=2)
        pd.testing.assert_frame_equal(results(pool), expected)


def test_backend_argument_errors(monkeypatch):
    with pytest.raises(BackendError, match="backend must be one of local, ray, got 'gpu'"):
        make_backend("gpu")
    with pytest.raises(BackendError, match="workers must be an int >= 1, got 0"):
        make_backend("local", workers=0)
    with pytest.raises(BackendError, match="--address is for the ray backend"):
        make_backend("local", address="localhost:6379")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(BackendError, match=r"pip install 'droplab\[ray\]'"):
        import_ray()
