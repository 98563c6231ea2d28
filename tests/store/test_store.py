"""The SQLite store: round trip, skip/retry semantics, atomicity, and the clear errors."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3

import pytest

from droplab.store import (
    SCHEMA_VERSION,
    RunLock,
    Store,
    StoreError,
    TrialRecord,
    config_hash,
)


def rec(seed: int, study: str = "s", preset: str = "quick", **fields) -> TrialRecord:
    config = {"n": 100, "rate": 0.5, "widths": [8, 4]}
    return TrialRecord(
        hash=config_hash(study, preset, config, seed),
        study=study,
        preset=preset,
        seed=seed,
        config=config,
        **fields,
    )


def test_config_hash_is_sha256_of_canonical_json_and_ignores_key_order():
    text = '{"config":{"a":1,"b":[1,2]},"preset":"quick","seed":3,"study":"s"}'
    expected = hashlib.sha256(text.encode()).hexdigest()
    assert config_hash("s", "quick", {"b": [1, 2], "a": 1}, 3) == expected
    assert config_hash("s", "quick", {"a": 1, "b": [1, 2]}, 4) != expected
    with pytest.raises(TypeError, match="JSON-serializable"):
        config_hash("s", "quick", {"a": object()}, 0)
    with pytest.raises(TypeError, match="JSON-serializable"):
        config_hash("s", "quick", {"a": math.nan}, 0)


def test_round_trip_frame_and_status(tmp_path):
    path = tmp_path / "sub" / "results.db"
    with Store(path) as store:
        store.mark_running([rec(0), rec(1), rec(2)])
        store.record(
            [
                rec(
                    0,
                    status="finished",
                    metrics={"test_error": 0.25, "seed": 7.0, "nan_metric": math.nan},
                    curves={"val_error": [0.5, 0.3]},
                    seconds=1.5,
                    host="h",
                    droplab_version="0.1.0",
                    torch_version="2.x",
                )
            ]
        )
        store.record([rec(1, status="failed", error="Traceback ...\nRuntimeError: boom")])
    assert os.path.exists(path)
    with Store(path, readonly=True) as store:
        frame = store.frame("s")
        status = store.status()
        errors = store.errors("s")
    assert list(frame["seed"]) == [0, 1, 2]
    assert list(frame["status"]) == ["finished", "failed", "running"]
    row = frame.iloc[0]
    assert row["n"] == 100 and row["rate"] == 0.5 and row["widths"] == (8, 4)
    assert row["test_error"] == 0.25
    assert row["metric_seed"] == 7.0  # a metric named like a column gets a prefix
    assert math.isnan(row["nan_metric"])  # NaN metrics survive as NaN (stored as null)
    assert row["curves"] == {"val_error": [0.5, 0.3]}
    assert row["seconds"] == 1.5 and row["host"] == "h" and row["torch_version"] == "2.x"
    assert math.isnan(frame.iloc[1]["test_error"])
    assert frame.iloc[1]["error"].endswith("RuntimeError: boom")
    assert errors == ['{"n":100,"rate":0.5,"widths":[8,4]} seed=1: RuntimeError: boom']
    assert status.to_dict("records") == [
        {
            "study": "s",
            "preset": "quick",
            "finished": 1,
            "failed": 1,
            "running": 1,
            "unfinished": 0,
            "total": 3,
        }
    ]


def test_finished_is_never_overwritten_and_failed_is_retried(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.record([rec(0, status="finished", metrics={"m": 1.0})])
        store.record([rec(1, status="failed", error="x")])
        # A later run: marking running and recording must not touch the finished row.
        store.mark_running([rec(0), rec(1)])
        store.record(
            [rec(0, status="failed", error="late"), rec(1, status="finished", metrics={"m": 2.0})]
        )
        frame = store.frame("s")
        assert store.finished([rec(0).hash, rec(1).hash, "nope"]) == {rec(0).hash, rec(1).hash}
    assert list(frame["status"]) == ["finished", "finished"]
    assert list(frame["m"]) == [1.0, 2.0]
    assert list(frame["attempts"]) == [1, 2]  # the failed trial was started twice


def test_mark_unfinished_and_preset_filter(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.mark_running([rec(0), rec(1), rec(0, preset="standard")])
        assert store.mark_unfinished([rec(0).hash]) == 1
        assert store.mark_unfinished() == 2
        assert set(store.frame("s")["status"]) == {"unfinished"}
        assert len(store.frame("s", preset="standard")) == 1
        assert len(store.frame("other")) == 0
        assert list(store.frame("other").columns[:5]) == [
            "hash",
            "study",
            "preset",
            "seed",
            "status",
        ]
        with pytest.raises(ValueError, match="status must be one of"):
            store.frame("s", status="done")


def test_a_group_is_written_in_one_transaction(tmp_path):
    """A failure in the middle of record() leaves none of the group's rows."""
    with Store(tmp_path / "r.db") as store:
        bad = rec(1, status="finished", metrics={"m": 1.0})
        bad.config = {"x": object()}  # not JSON: fails while building the rows
        with pytest.raises(TypeError):
            store.record([rec(0, status="finished", metrics={"m": 1.0}), bad])
        assert len(store.frame("s")) == 0


def test_reopening_keeps_schema_and_marker(tmp_path):
    path = tmp_path / "r.db"
    Store(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE key='application'").fetchone()[0] == (
        "droplab-store"
    )
    con.close()
    Store(path).close()


def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "r.db"
    path.touch()
    with Store(path) as store:
        assert store.status().empty


@pytest.mark.parametrize(
    "content, match",
    [
        (b"hello, this is a text file\n" * 10, "not a droplab store \\(not an SQLite file\\)"),
        (b"SQLite format 3\x00\x10", "truncated"),
    ],
)
def test_not_sqlite_errors(tmp_path, content, match):
    path = tmp_path / "r.db"
    path.write_bytes(content)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=match):
            Store(path, readonly=readonly)


def test_truncated_store(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:  # enough rows for many pages
        store.record([rec(i, status="finished", metrics={"m": float(i)}) for i in range(400)])
    size = path.stat().st_size
    assert size > 8 * 4096
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(StoreError, match="truncated"):
        Store(path)


def test_foreign_sqlite_and_newer_schema(tmp_path):
    foreign = tmp_path / "other.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="SQLite database but not a droplab store"):
        Store(foreign)

    newer = tmp_path / "newer.db"
    Store(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer droplab"):
        Store(newer, readonly=True)


def test_missing_folder_and_readonly_errors(tmp_path):
    with pytest.raises(StoreError, match="no droplab store"):
        Store(tmp_path / "missing.db", readonly=True)
    with pytest.raises(StoreError, match="is a folder"):
        Store(tmp_path)
    path = tmp_path / "r.db"
    Store(path).close()
    with Store(path, readonly=True) as store, pytest.raises(StoreError, match="read-only"):
        store.record([rec(0, status="finished")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_readonly_file_and_folder(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:
        store.record([rec(0, status="finished", metrics={"m": 1.0})])
    path.chmod(0o444)
    with pytest.raises(StoreError, match="read-only"):
        Store(path)
    tmp_path.chmod(0o555)
    try:
        with Store(path, readonly=True) as store:  # still readable
            assert len(store.frame("s")) == 1
        with pytest.raises(StoreError, match="read-only"):
            Store(tmp_path / "new.db")
    finally:
        tmp_path.chmod(0o755)


def test_run_lock_refuses_a_second_run(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store, store.lock():
        assert RunLock.held(path)
        with pytest.raises(StoreError, match=f"another `droplab run` \\(pid {os.getpid()}\\)"):
            RunLock(path).acquire()
    assert not RunLock.held(path)
    with RunLock(path):  # free again
        pass


def test_canonical_config_in_frame_is_json(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.record([rec(0, status="finished", metrics={"m": 1.0})])
        raw = store._con.execute("SELECT config FROM trials").fetchone()[0]
    assert json.loads(raw) == {"n": 100, "rate": 0.5, "widths": [8, 4]}
    assert raw == '{"n":100,"rate":0.5,"widths":[8,4]}'
