"""Ray: the worker process running a task is SIGKILLed in the middle of it; Ray retries the
task on a new worker and the store ends complete, equal to a local run (one local Ray with
2 CPUs, ~10-20 s to start)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest
import rel_study

from droplab.backends import run_study
from droplab.store import Store

from .test_faults import SAME, check_rows

pytest.importorskip("ray")


def test_ray_worker_killed_mid_task_is_retried_and_the_store_is_complete(tmp_path, monkeypatch):
    from droplab.backends.ray import RayBackend

    monkeypatch.setenv("REL_XS", "4")  # 16 trials in 4 groups: Ray's start-up dominates
    study = rel_study.STUDY
    trials = study.expand("quick")
    assert len(trials) == 16
    with Store(tmp_path / "local.db") as local:
        run_study(study, trials, local)
        expected = local.frame("rel")[SAME]

    folder = tmp_path / "kill"
    folder.mkdir()
    monkeypatch.setenv("REL_RAY_KILL", str(folder))  # before Ray starts: workers inherit it
    killed: list[int] = []

    def kill_the_worker() -> None:  # group x=2 writes its worker's pid, then sleeps
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if (folder / "pid").exists():
                pid = int((folder / "pid").read_text())
                (folder / "killed").write_text("")  # the retried task runs normally
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    backend = RayBackend(num_cpus=2)
    try:
        with Store(tmp_path / "ray.db") as store:
            summary = run_study(study, trials, store, backend=backend, workers=2)
            frame = store.frame("rel")
    finally:
        backend.close()
        killer.join(timeout=5)
    assert killed and killed[0] != os.getpid(), "no Ray worker was killed"
    assert (summary.finished, summary.failed) == (16, 0)
    assert set(frame["backend"]) == {"ray"}
    pd.testing.assert_frame_equal(frame[SAME], expected)
    check_rows(tmp_path / "ray.db")
