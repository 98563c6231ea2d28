"""The ``droplab`` command, in process, on the fake study: run, status, results, report,
and one-line errors with exit code 2."""

from __future__ import annotations

import sys

import fake_study
import pytest

from droplab import studies
from droplab.cli import main
from droplab.store import RunLock, Store


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(studies.REGISTRY, "fake", fake_study.STUDY)
    return fake_study.STUDY


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_status_results(tmp_path, capsys, fake, monkeypatch):
    store = tmp_path / "r.db"
    log = tmp_path / "trained.log"
    monkeypatch.setenv("FAKE_STUDY_LOG", str(log))
    code, out, err = run_cli(
        capsys, "run", "fake", "--preset", "quick", "--store", store, "--no-report"
    )
    assert code == 0, err
    assert "fake: 18 trials: 0 already stored, 18 run, 0 failed" in err
    assert "fake: arm b lowers the error at x=1 by" in out
    assert f"results: {store}" in out

    code, out, err = run_cli(
        capsys, "run", "fake", "--preset", "quick", "--store", store, "--no-report"
    )
    assert code == 0 and "18 already stored, 0 run, 0 failed" in err
    assert len(log.read_text().splitlines()) == 18  # the second invocation trained nothing

    code, out, _ = run_cli(capsys, "status", "--store", store)
    assert code == 0
    assert out.splitlines()[1].split() == ["fake", "quick", "18", "0", "0", "0", "18"]
    import torch

    from droplab.backends.common import code_version

    line = out.split("trained by")[1].splitlines()[2]  # study, preset, code, threads
    assert line.split()[:2] == ["fake", "quick"]
    assert (code_version() or "not recorded") in line
    assert line.split()[-1] == str(torch.get_num_threads())  # in-process trials' threads

    code, first, _ = run_cli(capsys, "results", "fake", "--store", store)
    code2, second, _ = run_cli(capsys, "results", "fake", "--store", store)
    assert code == code2 == 0 and first == second  # deterministic, no timings
    assert "verdict: arm b lowers" in first and "n_seeds" in first

    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "fake\n    Does arm b beat arm a?" in out


def test_report_command_renders(tmp_path, capsys, fake):
    store = tmp_path / "r.db"
    assert (
        run_cli(capsys, "run", "fake", "--preset", "quick", "--store", store, "--no-report")[0] == 0
    )
    code, out, err = run_cli(capsys, "report", "--store", store, "--out", tmp_path / "rep")
    assert code == 0, err
    assert (tmp_path / "rep" / "index.html").exists() and "report:" in out


def test_failed_trials_exit_1_and_are_retried(tmp_path, capsys, fake, monkeypatch):
    store = tmp_path / "r.db"
    monkeypatch.setenv("FAKE_STUDY_FAIL", "3")
    code, _, err = run_cli(
        capsys, "run", "fake", "--preset", "quick", "--store", store, "--no-report"
    )
    assert code == 1 and "6 trials failed" in err
    monkeypatch.delenv("FAKE_STUDY_FAIL")
    code, _, err = run_cli(
        capsys, "run", "fake", "--preset", "quick", "--store", store, "--no-report"
    )
    assert code == 0 and "12 already stored, 6 run, 0 failed" in err


def _errors(tmp_path):
    text = tmp_path / "text.db"
    text.write_text("not a database\n" * 20)
    empty = tmp_path / "empty.db"
    Store(empty).close()
    return [
        (["run", "nosuch"], "unknown study 'nosuch'; valid studies: "),
        (["run", "fake", "--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
        (["run", "fake", "--backend", "spark"], "argument --backend: invalid choice: 'spark'"),
        (["run", "fake", "--workers", "0"], "--workers must be >= 1, got 0"),
        (["run", "fake", "--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (["run", "fake", "--address", "h:1"], "--address is for the ray backend"),
        (["run", "fake", "--device", "tpu"], "--device must be cpu, cuda or cuda:N, got 'tpu'"),
        (["run", "fake", "--model", "m:build"], "study 'fake' does not take --model/--data"),
        (["run", "--store", text], "is not a droplab store (not an SQLite file)"),
        (["status", "--store", text], "is not a droplab store (not an SQLite file)"),
        (["results", "fake", "--store", tmp_path / "missing.db"], "no droplab store at"),
        (["results", "fake", "--store", empty], "no finished trials of study 'fake'"),
        (["results", "nosuch", "--store", empty], "unknown study 'nosuch'"),
        (["report", "--store", tmp_path / "missing.db"], "no droplab store at"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ]


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys, fake):
    for argv, message in _errors(tmp_path):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert err.startswith("droplab: error: ") and err.count("\n") == 1, (argv, err)
        assert message in err, (argv, err)
        assert "Traceback" not in err + out


def test_a_second_run_on_a_locked_store_refuses(tmp_path, capsys, fake):
    store = tmp_path / "r.db"
    Store(store).close()
    with RunLock(store):
        code, _, err = run_cli(capsys, "run", "fake", "--preset", "quick", "--store", store)
    assert code == 2 and "another `droplab run`" in err and "is writing to" in err


def test_report_without_the_report_package_prints_tables(tmp_path, capsys, fake, monkeypatch):
    store = tmp_path / "r.db"
    assert (
        run_cli(capsys, "run", "fake", "--preset", "quick", "--store", store, "--no-report")[0] == 0
    )
    monkeypatch.setitem(sys.modules, "droplab.report", None)  # as if it were not installed
    code, out, _ = run_cli(capsys, "report", "--store", store)
    assert code == 0 and "printing the tables instead" in out and "verdict: arm b lowers" in out


def test_a_failing_report_exits_1_and_points_at_the_results(tmp_path, capsys, fake, monkeypatch):
    import droplab.report

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(droplab.report, "render", broken)
    store = tmp_path / "r.db"
    code, out, err = run_cli(capsys, "run", "fake", "--preset", "quick", "--store", store)
    assert code == 1 and "the report failed (boom); the results are in" in err
    assert f"results: {store}" in out and "Traceback" not in err
