"""A `droplab run` killed with SIGKILL in the middle resumes to the same final table as an
uninterrupted run, and a further invocation trains nothing. Real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fake_study
import pytest

from droplab import studies
from droplab.cli import main
from droplab.store import Store, StoreError

FAKE_DIR = str(Path(__file__).parents[1] / "backends")  # where fake_study.py lives
DROPLAB = [sys.executable, "-c", "import sys; from droplab.cli import main; sys.exit(main())"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_STUDY_")}
    env["FAKE_STUDY_CONTROL"] = os.environ["FAKE_STUDY_CONTROL"]
    env["PYTHONPATH"] = os.pathsep.join([FAKE_DIR, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(DROPLAB_STUDIES="fake_study", OMP_NUM_THREADS="1", **extra)
    return env


def _finished(path: Path) -> int:
    try:
        with Store(path, readonly=True) as store:
            return int((store.frame("fake")["status"] == "finished").sum())
    except StoreError:  # not created yet
        return 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    store, ref, log = tmp_path / "r.db", tmp_path / "ref.db", tmp_path / "trained.log"
    argv = ["run", "fake", "--preset", "standard", "--no-report", "--store"]
    # 3 groups of 8 trials, 1 s each: kill once the first group is stored.
    proc = subprocess.Popen(
        [*DROPLAB, *argv, str(store)],
        env=_env(FAKE_STUDY_SLEEP="1.0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while _finished(store) < 8:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never stored its first group"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    before = _finished(store)
    assert 8 <= before < 24, before  # killed in the middle

    resumed = subprocess.run(
        [*DROPLAB, *argv, str(store)],
        env=_env(FAKE_STUDY_LOG=str(log)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"fake: 24 trials: {before} already stored, {24 - before} run, 0 failed" in resumed.stderr
    )
    assert len(log.read_text().splitlines()) == 24 - before  # only the missing trials trained

    # The uninterrupted reference, and a third invocation that must train nothing.
    monkeypatch.setitem(studies.REGISTRY, "fake", fake_study.STUDY)
    monkeypatch.setenv("FAKE_STUDY_LOG", str(log))
    assert main([*argv, str(ref)]) == 0
    trained = len(log.read_text().splitlines())
    assert main([*argv, str(store)]) == 0
    assert len(log.read_text().splitlines()) == trained
    capsys.readouterr()
    assert main(["results", "fake", "--store", str(store)]) == 0
    table = capsys.readouterr().out
    assert main(["results", "fake", "--store", str(ref)]) == 0
    assert capsys.readouterr().out == table
    with Store(store, readonly=True) as a, Store(ref, readonly=True) as b:
        cols = ["hash", "seed", "status", "x", "arm", "test_error", "curves"]
        assert a.frame("fake")[cols].equals(b.frame("fake")[cols])


def test_console_errors_have_no_traceback(tmp_path):
    done = subprocess.run(
        [*DROPLAB, "run", "nosuch", "--store", str(tmp_path / "r.db")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("droplab: error: unknown study 'nosuch'; valid studies: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
