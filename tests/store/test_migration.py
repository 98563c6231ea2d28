"""Schema version 2 (code_version, threads): v1 stores migrate on write, read as is
read-only, and newer stores are still refused."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from droplab.store import SCHEMA_VERSION, Store, StoreError, TrialRecord, config_hash

# The version-1 schema as droplab 0.1.0 wrote it, spelled out here (not imported), so the
# test keeps describing the old files even when the code's constants change.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trials (
    hash TEXT PRIMARY KEY, study TEXT NOT NULL, preset TEXT NOT NULL, seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'unfinished')),
    metrics TEXT, curves TEXT, started_at REAL, finished_at REAL, seconds REAL,
    attempts INTEGER NOT NULL DEFAULT 0, host TEXT, backend TEXT, device TEXT,
    droplab_version TEXT, torch_version TEXT, python_version TEXT, error TEXT
);
CREATE INDEX trials_by_study ON trials (study, preset, status);
"""
CONFIG = {"rate": 0.5}


def rec(seed: int, **fields) -> TrialRecord:
    return TrialRecord(
        hash=config_hash("s", "quick", CONFIG, seed),
        study="s",
        preset="quick",
        seed=seed,
        config=CONFIG,
        **fields,
    )


def make_v1(path) -> None:
    """A version-1 store with one finished and one failed trial, written by sqlite3."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.executescript(V1_SCHEMA)
    con.execute("INSERT INTO meta VALUES ('application', 'droplab-store')")
    con.execute("PRAGMA application_id = 1146244944")  # "DROP"
    con.execute("PRAGMA user_version = 1")
    rows = [
        (0, "finished", '{"test_error":12.5}', None),
        (1, "failed", None, "Traceback...\nRuntimeError: old failure"),
    ]
    for seed, status, metrics, error in rows:
        con.execute(
            "INSERT INTO trials (hash, study, preset, seed, config, status, metrics, curves, "
            "attempts, host, droplab_version, torch_version, error) "
            "VALUES (?, 's', 'quick', ?, '{\"rate\":0.5}', ?, ?, '{}', 1, 'old-host', "
            "'0.1.0', '2.x', ?)",
            (config_hash("s", "quick", CONFIG, seed), seed, status, metrics, error),
        )
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def user_version(path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def columns(path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return [tuple(r) for r in con.execute("PRAGMA table_info(trials)")]
    finally:
        con.close()


def test_schema_version_is_2():
    assert SCHEMA_VERSION == 2


def store_provenance(path):
    with Store(path, readonly=True) as store:
        return store.provenance()


def test_readonly_open_reads_a_v1_store_without_changing_it(tmp_path):
    path = tmp_path / "v1.db"
    make_v1(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with Store(path, readonly=True) as store:
        frame = store.frame("s")
        with pytest.raises(StoreError, match="read-only"):
            store.record([rec(2, status="finished")])
    assert list(frame["status"]) == ["finished", "failed"]
    assert frame.loc[0, "test_error"] == 12.5 and frame.loc[0, "host"] == "old-host"
    assert frame["code_version"].isna().all() and frame["threads"].isna().all()
    assert str(frame["threads"].dtype) == "Int64"
    prov = store_provenance(path)
    assert prov.to_dict("records") == [
        {"study": "s", "preset": "quick", "code": "not recorded", "threads": "not recorded"}
    ]
    assert user_version(path) == 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_writing_migrates_a_v1_store_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v1.db"
    make_v1(path)
    with Store(path) as store:
        assert user_version(path) == SCHEMA_VERSION  # migrated on open, before any write
        store.mark_running([rec(1), rec(2)])
        store.record(
            [
                rec(1, status="finished", metrics={"test_error": 11.0}, threads=2),
                rec(2, status="finished", metrics={"test_error": 10.0}, code_version="abc-dirty"),
            ]
        )
    with Store(path, readonly=True) as store:
        frame = store.frame("s")
    assert list(frame["seed"]) == [0, 1, 2]
    assert list(frame["test_error"]) == [12.5, 11.0, 10.0]
    assert frame.loc[0, "torch_version"] == "2.x"  # the old row as it was
    assert frame["code_version"].isna().tolist() == [True, True, False]
    assert frame.loc[2, "code_version"] == "abc-dirty"
    assert frame["threads"].isna().tolist() == [True, False, True]
    assert frame.loc[1, "threads"] == 2
    assert list(frame["attempts"]) == [1, 2, 1]  # the old failed trial was retried
    prov = store_provenance(path)  # finished trials: one old, two new -> mixed, said so
    assert prov.loc[0, "code"] == "abc-dirty, not recorded"
    assert prov.loc[0, "threads"] == "2, not recorded"
    # Migrated and newly created stores have the same table, column for column.
    Store(tmp_path / "new.db").close()
    assert columns(path) == columns(tmp_path / "new.db")
    with Store(path):  # reopening a migrated store is a no-op
        pass
    assert user_version(path) == SCHEMA_VERSION


def test_new_trials_carry_code_version_and_threads(tmp_path):
    with Store(tmp_path / "r.db") as store:
        store.record([rec(0, status="finished", code_version="7554208c1f0e", threads=1)])
        store.record([rec(1, status="failed", error="x", code_version="e81f21d0aa00", threads=2)])
        frame = store.frame("s")
    assert frame["code_version"].tolist() == ["7554208c1f0e", "e81f21d0aa00"]
    assert frame["threads"].tolist() == [1, 2]
    with Store(tmp_path / "r.db", readonly=True) as store:  # finished trials only
        assert store.provenance().to_dict("records") == [
            {"study": "s", "preset": "quick", "code": "7554208c1f0e", "threads": "1"}
        ]
    tail = list(frame.columns[-4:])
    assert tail == ["python_version", "code_version", "threads", "curves"]


def test_a_newer_schema_is_still_refused(tmp_path):
    path = tmp_path / "newer.db"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="newer droplab; this droplab reads up to version 2"):
            Store(path, readonly=readonly)
    assert user_version(path) == SCHEMA_VERSION + 1
