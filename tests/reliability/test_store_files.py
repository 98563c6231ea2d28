"""Bad store files: truncated, damaged, not SQLite, another application's SQLite, a newer
schema, read-only. ``droplab run`` and ``droplab status`` must answer with one line naming
the file and what to do (exit code 2) and leave every byte of the file as it was. Also:
stores created and read by several processes at once."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from droplab.store import Store, StoreError

from .harness import integrity, one_error_line

ADVICE = {
    "truncated": "restore it from a copy or start a new --store",
    "damaged": "restore it from a copy or start a new --store",
    "not-sqlite": "pass another --store",
    "foreign-sqlite": "pass another --store",
    "newer-schema": "upgrade droplab",
    "read-only": "pass a writable --store",
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def good_store(zygote, tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("good") / "good.db"
    result = zygote.run(["run", "rel", "--preset", "quick", "--store", db, "--no-report"])
    assert result.code == 0, result.err
    assert not Path(str(db) + "-wal").exists()  # closed cleanly: everything in the file
    return db


def make_bad(kind: str, good: Path, folder: Path) -> Path:
    db = folder / f"{kind}.db"
    if kind == "truncated":
        data = good.read_bytes()
        db.write_bytes(data[: len(data) * 3 // 5])
    elif kind == "truncated-header":
        db.write_bytes(good.read_bytes()[:50])
    elif kind == "damaged":
        data = bytearray(good.read_bytes())
        page = int.from_bytes(data[16:18], "big")
        data[2 * page : 4 * page] = os.urandom(2 * page)  # pages 3-4: tables' b-trees
        db.write_bytes(bytes(data))
    elif kind == "not-sqlite":
        db.write_bytes(b"results of last week\n" * 40)
    elif kind == "foreign-sqlite":
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO photos (name) VALUES ('cat.jpg')")
        con.commit()
        con.close()
    elif kind == "newer-schema":
        shutil.copy(good, db)
        con = sqlite3.connect(db)
        con.execute("PRAGMA user_version = 7")
        con.close()
    return db


KINDS = ["truncated", "truncated-header", "damaged", "not-sqlite", "foreign-sqlite", "newer-schema"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_store_file_is_refused_in_one_line_and_left_untouched(
    zygote, good_store, tmp_path, kind
):
    db = make_bad(kind, good_store, tmp_path)
    before = digest(db)
    for argv in (
        ["run", "rel", "--preset", "quick", "--store", db, "--no-report"],
        ["status", "--store", db],
        ["results", "rel", "--store", db],
    ):
        result = zygote.run(argv)
        assert result.code == 2, (argv[0], result.code, result.out, result.err)
        line = one_error_line(result)
        assert str(db) in line, line
        assert ADVICE[kind.replace("-header", "")] in line, line
        assert digest(db) == before, f"{argv[0]} changed the bytes of a {kind} store"


def test_read_only_store_is_refused_for_runs_and_read_by_status(zygote, good_store):
    folder = Path(tempfile.mkdtemp(prefix="droplab-ro-"))
    try:
        os.chmod(folder, 0o755)
        db = folder / "ro.db"
        shutil.copy(good_store, db)
        os.chmod(db, 0o444)
        before = digest(db)
        # root ignores file modes: run the commands as an unprivileged user then
        uid = 65534 if os.geteuid() == 0 else None
        run = zygote.run(["run", "rel", "--preset", "quick", "--store", db, "--no-report"], uid=uid)
        assert run.code == 2, (run.code, run.err)
        line = one_error_line(run)
        assert str(db) in line and ADVICE["read-only"] in line, line
        status = zygote.run(["status", "--store", db], uid=uid)
        assert status.code == 0, status.err
        assert "rel" in status.out and "48" in status.out
        assert digest(db) == before
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_many_processes_creating_one_new_store_at_once(tmp_path):
    """Two processes open the same not-yet-existing store in the same instant (10 times):
    both get a working store, created exactly once."""
    bad = []
    for i in range(10):
        db = tmp_path / f"s{i}.db"
        go = time.time() + 0.05
        pids = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:  # only sqlite3 and os._exit in the child: safe after torch
                code = 0
                try:
                    while time.time() < go:
                        pass
                    Store(db).close()
                except StoreError:
                    code = 2
                except BaseException:
                    code = 3
                os._exit(code)
            pids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
        if codes != [0, 0]:
            bad.append((i, codes))
        assert integrity(db) == "ok"
    assert not bad, f"opening a new store from two processes at once failed: {bad}"


def test_status_works_while_a_run_writes(zygote, tmp_path):
    db = tmp_path / "live.db"
    run = zygote.start(
        ["run", "rel", "--preset", "quick", "--store", db, "--no-report"],
        env={"REL_SLEEP": "0.05"},
    )
    codes = []
    deadline = time.time() + 60
    while time.time() < deadline:
        if db.exists():
            status = zygote.run(["status", "--store", db])
            codes.append((status.code, status.err.strip()))
        if os.path.exists(f"/proc/{run}") and open(f"/proc/{run}/stat").read().split()[2] != "Z":
            continue
        break
    assert zygote.wait(run).code == 0
    assert codes and all(c == 0 for c, _ in codes), codes
