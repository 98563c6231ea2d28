"""The store's file format: what makes an SQLite file a droplab store, its schema and
migrations, and the functions that check, create and migrate it over a connection.

Schema (version :data:`SCHEMA_VERSION`, kept in ``PRAGMA user_version``; the file is
marked as droplab's by ``PRAGMA application_id`` and a ``meta`` row ``application``)::

    meta(key PRIMARY KEY, value)
    trials(hash PRIMARY KEY,            -- sha256 of canonical JSON {study, preset, config, seed}
           study, preset, seed,         -- identity, also inside the hash
           config,                      -- canonical JSON object
           status,                      -- running | finished | failed | unfinished
           metrics, curves,             -- JSON objects: name -> float / name -> [float]
           started_at, finished_at,     -- unix seconds
           seconds,                     -- wall time of the trial's group (shared by its members)
           attempts,                    -- how many times the trial was started
           host, backend, device,
           droplab_version, torch_version, python_version,
           error,                       -- the failure's text for a failed trial
           code_version,                -- v2: git commit of the droplab source that trained
                                        --     the trial ("7554208c1f0e", "-dirty" suffix when
                                        --     the package's tracked files had uncommitted
                                        --     changes); NULL when not a git checkout
           threads)                     -- v2: torch.get_num_threads() of the training process

Both provenance columns matter for reproducing numbers digit for digit: some batched
GEMM/reduction results differ between torch thread counts, and the package version does not
change between commits.

Migration: opening a version-1 store for writing adds the two version-2 columns in place
(one transaction: ``ALTER TABLE ... ADD COLUMN``, then ``PRAGMA user_version = 2``); its
old rows read them as NULL. A read-only open never migrates: a version-1 store reads as is,
with ``code_version`` and ``threads`` None. A store of a newer schema is refused.

Creation is one write transaction that first checks the file is still empty, so of two
runs started together on a new store exactly one creates it.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from pathlib import Path

from droplab.store.errors import StoreError, translate

__all__ = [
    "APPLICATION",
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "check_header",
    "check_or_create",
    "create",
    "migrate",
    "schema_state",
    "trial_columns",
]


SCHEMA_VERSION = 2
APPLICATION = "droplab-store"
# PRAGMA application_id: ASCII "DROP" as a big-endian 32-bit int, visible in the file header.
APPLICATION_ID = 0x44524F50
BUSY_TIMEOUT_MS = 30_000
CREATE_WAIT_S = 1.0  # how long a reader waits for a store that is being created
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trials (
    hash TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    preset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'unfinished')),
    metrics TEXT,
    curves TEXT,
    started_at REAL,
    finished_at REAL,
    seconds REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    backend TEXT,
    device TEXT,
    droplab_version TEXT,
    torch_version TEXT,
    python_version TEXT,
    error TEXT
);
CREATE INDEX trials_by_study ON trials (study, preset, status);
"""
# Steps from schema version N-1 to N, each run in one transaction with the user_version
# bump. A new store is _SCHEMA_V1 plus every step, so created and migrated stores have the
# same schema (same columns in the same order).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE trials ADD COLUMN code_version TEXT",
        "ALTER TABLE trials ADD COLUMN threads INTEGER",
    ),
}


def check_header(path: Path) -> None:
    """Cheap checks of the file header of the existing file ``path``: SQLite magic, and
    a size that matches the page count the header declares (catches truncated copies).

    Raises:
        StoreError: not an SQLite file, or truncated.
    """
    p = path
    size = p.stat().st_size
    if size == 0:
        return  # an empty file is an empty SQLite database; we initialize it
    with open(p, "rb") as f:
        header = f.read(100)
    if not header.startswith(_SQLITE_MAGIC[: len(header)]) or (
        len(header) >= 16 and header[:16] != _SQLITE_MAGIC
    ):
        raise StoreError(
            f"{p} is not a droplab store (not an SQLite file); left untouched: pass another --store"
        )
    if len(header) < 100:
        raise StoreError(
            f"store {p} is truncated ({size} bytes, less than an SQLite header); "
            "restore it from a copy or start a new --store"
        )
    wal = Path(str(p) + "-wal")
    # A run writing the store now (a checkpoint copying pages from its WAL) can make the
    # file look short for an instant: only a file that stays short is truncated.
    for attempt in range(5):
        if attempt:
            time.sleep(0.05)
            with open(p, "rb") as f:
                header = f.read(100)
            size = p.stat().st_size
        page_size = struct.unpack(">H", header[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        n_pages = struct.unpack(">I", header[28:32])[0]
        change_counter, valid_for = header[24:28], header[92:96]
        if not (
            change_counter == valid_for
            and n_pages > 0
            and size < n_pages * page_size
            and not (wal.exists() and wal.stat().st_size > 0)
        ):
            return
    raise StoreError(
        f"store {p} is truncated ({size} bytes, its header declares "
        f"{n_pages * page_size}); restore it from a copy or start a new --store"
    )


def check_or_create(con: sqlite3.Connection, path: Path, *, readonly: bool) -> frozenset[str]:
    """Make sure ``con`` (opened on ``path``) is a usable droplab store: create the schema
    in an empty file, migrate an older one when not ``readonly``, and return the column
    names of ``trials`` as the file has them (a version-1 store read as is lacks the
    version-2 columns).

    Raises:
        StoreError: an empty file opened ``readonly``, an SQLite database of another
            application, a newer or unknown schema version, or a damaged file.
    """
    try:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version, tables = schema_state(con)
        if not tables and version == 0 and readonly:
            # a run may be creating this store right now (its file exists before its
            # schema transaction commits): wait a moment before calling it empty
            deadline = time.monotonic() + CREATE_WAIT_S
            while not tables and version == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
                version, tables = schema_state(con)
            if not tables and version == 0:
                raise StoreError(f"{path} is an empty file, not a droplab store yet")
        if not tables and version == 0:
            if create(con):
                return trial_columns(con)
            version, tables = schema_state(con)  # another process just created it
        marker = None
        if "meta" in tables:
            row = con.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()
            marker = row[0] if row else None
        if marker != APPLICATION:
            raise StoreError(
                f"{path} is an SQLite database but not a droplab store "
                "(no droplab marker); left untouched: pass another --store"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {path} has schema version {version}, written by a newer "
                f"droplab; this droplab reads up to version {SCHEMA_VERSION}: upgrade droplab"
            )
        if version < 1:
            raise StoreError(f"store {path} has an unknown schema version {version}")
        # Touch the data pages, so a damaged file fails here and not in the middle of a run.
        con.execute("SELECT count(*), max(length(config)) FROM trials").fetchone()
        if not readonly:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            if version < SCHEMA_VERSION:
                migrate(con)
        return trial_columns(con)
    except sqlite3.DatabaseError as e:
        raise translate(e, path) from None


def trial_columns(con: sqlite3.Connection) -> frozenset[str]:
    """The column names of ``trials`` as the file has them now."""
    return frozenset(r[1] for r in con.execute("PRAGMA table_info(trials)"))


def migrate(con: sqlite3.Connection) -> None:
    """Bring an older store up to :data:`SCHEMA_VERSION` in place, one transaction.

    The version is read again inside the write transaction, so two runs opening the
    same old store together migrate it exactly once."""
    con.execute("BEGIN IMMEDIATE")
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                con.execute(statement)
        if version < SCHEMA_VERSION:
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def schema_state(con: sqlite3.Connection) -> tuple[int, set[str]]:
    """(user_version, table names), read in one snapshot."""
    con.execute("BEGIN")
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        if con.in_transaction:
            con.execute("COMMIT")
    return version, tables


def create(con: sqlite3.Connection) -> bool:
    """Create the schema in an empty file; False if another process created it first
    (two runs started together on a new store: the check and the creation are one
    write transaction, so exactly one of them creates it)."""
    for attempt in range(100):  # converting to WAL does not wait on a busy file by itself
        try:
            con.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 99:
                raise
            time.sleep(0.05)
    con.execute("PRAGMA synchronous = NORMAL")
    # One transaction: a store is either fully created or not at all.
    con.execute("BEGIN IMMEDIATE")
    try:
        if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            con.execute("ROLLBACK")
            return False
        for statement in _SCHEMA_V1.split(";"):
            if statement.strip():
                con.execute(statement)
        for step in range(2, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                con.execute(statement)
        con.execute("INSERT INTO meta (key, value) VALUES ('application', ?)", (APPLICATION,))
        con.execute(
            "INSERT INTO meta (key, value) VALUES ('created_at', ?)", (f"{time.time():.3f}",)
        )
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return True
