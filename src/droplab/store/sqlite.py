"""The SQLite results store.

One file, stdlib :mod:`sqlite3`, write-ahead logging (readers never block the writer, so
``droplab status`` works while a run is going), a busy timeout for concurrent access.

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

A trial (or a whole group of trials trained together) is written in ONE transaction, so a
process killed at any instant leaves either the complete row or the previous state.
Finished trials are never overwritten by a later run; failed and unfinished ones are
retried. Only the driver process writes; workers return results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

try:  # POSIX advisory locks; on other platforms runs are not protected from each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "APPLICATION",
    "SCHEMA_VERSION",
    "STATUSES",
    "RunLock",
    "Store",
    "StoreError",
    "TrialRecord",
    "canonical_json",
    "config_hash",
]

SCHEMA_VERSION = 2
APPLICATION = "droplab-store"
# PRAGMA application_id: ASCII "DROP" as a big-endian 32-bit int, visible in the file header.
APPLICATION_ID = 0x44524F50
STATUSES = ("finished", "failed", "running", "unfinished")
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

_META_COLUMNS = ("hash", "study", "preset", "seed", "status")
_TAIL_COLUMNS = (
    "error",
    "attempts",
    "seconds",
    "started_at",
    "finished_at",
    "host",
    "backend",
    "device",
    "droplab_version",
    "torch_version",
    "python_version",
    "code_version",
    "threads",
    "curves",
)


class StoreError(ValueError):
    """The store file cannot be used: not a droplab store, damaged, newer schema,
    read-only, or locked by another run. The message is one line meant for the user."""


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, no whitespace and no NaN: equal values give equal text."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"trial config must be JSON-serializable (str, int, float, bool, None, lists, "
            f"dicts with str keys; no NaN), got {obj!r}: {e}"
        ) from None


def config_hash(study: str, preset: str, config: Mapping[str, Any], seed: int) -> str:
    """The stable identity of a trial: sha256 of the canonical JSON of
    ``{"study", "preset", "config", "seed"}`` (64 hex digits).

    Stable across processes, machines and Python versions (unlike ``hash()``)."""
    text = canonical_json({"study": study, "preset": preset, "config": dict(config), "seed": seed})
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class TrialRecord:
    """One row of the ``trials`` table, as the driver writes it."""

    hash: str
    study: str
    preset: str
    seed: int
    config: dict[str, Any]
    status: str = "running"
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None
    host: str | None = None
    backend: str | None = None
    device: str | None = None
    droplab_version: str | None = None
    torch_version: str | None = None
    python_version: str | None = None
    error: str | None = None
    code_version: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def _json_metric(value: Any) -> Any:
    """Metrics as JSON: NaN/inf become null (JSON has no NaN), numpy scalars become floats."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)) or hasattr(value, "__float__"):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (list, tuple)):
        return [_json_metric(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_metric(v) for k, v in value.items()}
    return value


class RunLock:
    """An exclusive advisory lock on ``<store>.lock`` held while a run writes to the store,
    so two ``droplab run`` processes never train the same trials twice.

    The second run refuses with a :class:`StoreError` naming the process that holds it.
    The lock dies with its process (flock), so a SIGKILLed run leaves no stale lock.
    """

    def __init__(self, store_path: str | os.PathLike[str]):
        self.path = Path(str(store_path) + ".lock")
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:  # pragma: no cover - Windows
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot create lock file {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"another `droplab run` (pid {holder}) is writing to {self.path.with_suffix('')}; "
                "wait for it to finish or pass another --store"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def held(store_path: str | os.PathLike[str]) -> bool:
        """Whether some process holds the run lock of the store now (False if unknown)."""
        path = Path(str(store_path) + ".lock")
        if fcntl is None or not path.exists():
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False


class Store:
    """The droplab results store: one SQLite file.

    Args:
        path: the ``.db`` file. Created (with its parent folders) when missing, unless
            ``readonly``.
        readonly: open for reading only (``droplab status``/``results``/``report``); works on
            read-only files and locations.

    Raises:
        StoreError: the file is not an SQLite file, is damaged or truncated, is an SQLite
            database of some other application, was written by a newer droplab, or cannot
            be written (read-only file or folder) when ``readonly`` is False.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._columns: frozenset[str] = frozenset()  # of `trials`, set once the schema is known
        self._con = self._connect()
        try:
            self._check_or_create()
        except BaseException:
            self._con.close()
            raise

    # -- opening --------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        p = self.path
        if p.is_dir():
            raise StoreError(f"store path {p} is a folder; pass a file such as {p / 'results.db'}")
        if self.readonly:
            if not p.exists():
                raise StoreError(f"no droplab store at {p} (create one with `droplab run`)")
            self._check_header()
            uri = f"file:{quote(str(p.resolve()))}?mode=ro"
            if not os.access(p.parent, os.W_OK):
                # WAL readers need to create <db>-shm; on a read-only folder read the file as is.
                uri += "&immutable=1"
            return self._wrap_connect(
                lambda: sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            )
        if p.exists():
            self._check_header()
            if not os.access(p, os.W_OK):
                raise StoreError(
                    f"store {p} is read-only; `droplab status/results/report` can still read it, "
                    "or pass a writable --store"
                )
            if not os.access(p.parent, os.W_OK):
                raise StoreError(
                    f"store folder {p.parent} is read-only (SQLite needs it for its journal); "
                    "pass a writable --store"
                )
        else:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create store folder {p.parent}: {e.strerror}") from None
            if not os.access(p.parent, os.W_OK):
                raise StoreError(f"cannot create store {p}: folder {p.parent} is read-only")
        return self._wrap_connect(lambda: sqlite3.connect(str(p), timeout=30, isolation_level=None))

    def _wrap_connect(self, connect: Any) -> sqlite3.Connection:
        try:
            con = connect()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from None
        con.row_factory = sqlite3.Row
        return con

    def _check_header(self) -> None:
        """Cheap checks of the file header: SQLite magic, and a size that matches the
        page count the header declares (catches truncated copies)."""
        p = self.path
        size = p.stat().st_size
        if size == 0:
            return  # an empty file is an empty SQLite database; we initialize it
        with open(p, "rb") as f:
            header = f.read(100)
        if not header.startswith(_SQLITE_MAGIC[: len(header)]) or (
            len(header) >= 16 and header[:16] != _SQLITE_MAGIC
        ):
            raise StoreError(
                f"{p} is not a droplab store (not an SQLite file); left untouched: pass "
                "another --store"
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

    def _check_or_create(self) -> None:
        con = self._con
        try:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version, tables = self._schema_state()
            if not tables and version == 0 and self.readonly:
                # a run may be creating this store right now (its file exists before its
                # schema transaction commits): wait a moment before calling it empty
                deadline = time.monotonic() + CREATE_WAIT_S
                while not tables and version == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)
                    version, tables = self._schema_state()
                if not tables and version == 0:
                    raise StoreError(f"{self.path} is an empty file, not a droplab store yet")
            if not tables and version == 0:
                if self._create():
                    self._columns = self._trial_columns()
                    return
                version, tables = self._schema_state()  # another process just created it
            marker = None
            if "meta" in tables:
                row = con.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()
                marker = row[0] if row else None
            if marker != APPLICATION:
                raise StoreError(
                    f"{self.path} is an SQLite database but not a droplab store "
                    "(no droplab marker); left untouched: pass another --store"
                )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {version}, written by a newer "
                    f"droplab; this droplab reads up to version {SCHEMA_VERSION}: upgrade droplab"
                )
            if version < 1:
                raise StoreError(f"store {self.path} has an unknown schema version {version}")
            # Touch the data pages, so a damaged file fails here and not in the middle of a run.
            con.execute("SELECT count(*), max(length(config)) FROM trials").fetchone()
            if not self.readonly:
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("PRAGMA synchronous = NORMAL")
                if version < SCHEMA_VERSION:
                    self._migrate()
            self._columns = self._trial_columns()
        except sqlite3.DatabaseError as e:
            raise self._translate(e) from None

    def _trial_columns(self) -> frozenset[str]:
        """The column names of ``trials`` as the file has them now."""
        return frozenset(r[1] for r in self._con.execute("PRAGMA table_info(trials)"))

    def _migrate(self) -> None:
        """Bring an older store up to :data:`SCHEMA_VERSION` in place, one transaction.

        The version is read again inside the write transaction, so two runs opening the
        same old store together migrate it exactly once."""
        con = self._con
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

    def _schema_state(self) -> tuple[int, set[str]]:
        """(user_version, table names), read in one snapshot."""
        con = self._con
        con.execute("BEGIN")
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        finally:
            if con.in_transaction:
                con.execute("COMMIT")
        return version, tables

    def _create(self) -> bool:
        """Create the schema in an empty file; False if another process created it first
        (two runs started together on a new store: the check and the creation are one
        write transaction, so exactly one of them creates it)."""
        con = self._con
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

    def _translate(self, e: sqlite3.Error) -> StoreError:
        msg = str(e)
        if "not a database" in msg:
            return StoreError(
                f"{self.path} is not a droplab store (not an SQLite file); left untouched: "
                "pass another --store"
            )
        if "malformed" in msg or "corrupt" in msg:
            return StoreError(
                f"store {self.path} is damaged (truncated or corrupt: {msg}); "
                "restore it from a copy or start a new --store"
            )
        if "full" in msg or "disk I/O error" in msg:
            return StoreError(
                f"cannot write to store {self.path} ({msg}; is the disk full?); the finished "
                "trials are kept: free some space and run the same command again to resume"
            )
        if "readonly" in msg or "read-only" in msg:
            return StoreError(f"store {self.path} is read-only ({msg}); pass a writable --store")
        return StoreError(f"store {self.path}: {msg}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; SQLite errors become one-line :class:`StoreError`."""
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only")
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as e:
            raise self._translate(e) from None

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._con.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as e:
            raise self._translate(e) from None

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self) -> RunLock:
        """The run lock of this store (use as a context manager around a run)."""
        return RunLock(self.path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}{', readonly=True' if self.readonly else ''})"

    # -- writing --------------------------------------------------------------------------

    def mark_running(self, records: Iterable[TrialRecord]) -> None:
        """Insert the trials as ``running`` (one transaction); finished rows stay as they are."""
        rows = [
            (
                r.hash,
                r.study,
                r.preset,
                int(r.seed),
                canonical_json(r.config),
                r.started_at if r.started_at is not None else time.time(),
                r.host,
                r.backend,
                r.device,
            )
            for r in records
        ]
        with self._write() as con:
            con.executemany(
                """INSERT INTO trials (hash, study, preset, seed, config, status, started_at,
                                       attempts, host, backend, device)
                   VALUES (?, ?, ?, ?, ?, 'running', ?, 1, ?, ?, ?)
                   ON CONFLICT (hash) DO UPDATE SET
                       status = 'running', started_at = excluded.started_at,
                       attempts = attempts + 1, host = excluded.host,
                       backend = excluded.backend, device = excluded.device, error = NULL
                   WHERE trials.status != 'finished'""",
                rows,
            )

    def record(self, records: Iterable[TrialRecord]) -> None:
        """Write finished or failed trials, all in ONE transaction.

        A finished row is never replaced (the first result stands)."""
        rows = []
        for r in records:
            if r.status not in ("finished", "failed"):
                raise ValueError(f"record() writes finished or failed trials, got {r.status!r}")
            rows.append(
                (
                    r.hash,
                    r.study,
                    r.preset,
                    int(r.seed),
                    canonical_json(r.config),
                    r.status,
                    canonical_json(_json_metric(r.metrics)),
                    canonical_json(_json_metric(r.curves)),
                    r.started_at,
                    r.finished_at if r.finished_at is not None else time.time(),
                    r.seconds,
                    r.host,
                    r.backend,
                    r.device,
                    r.droplab_version,
                    r.torch_version,
                    r.python_version,
                    r.error,
                    r.code_version,
                    None if r.threads is None else int(r.threads),
                )
            )
        with self._write() as con:
            con.executemany(
                """INSERT INTO trials (hash, study, preset, seed, config, status, metrics, curves,
                                       started_at, finished_at, seconds, attempts, host, backend,
                                       device, droplab_version, torch_version, python_version,
                                       error, code_version, threads)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (hash) DO UPDATE SET
                       status = excluded.status, metrics = excluded.metrics,
                       curves = excluded.curves, started_at = excluded.started_at,
                       finished_at = excluded.finished_at, seconds = excluded.seconds,
                       host = excluded.host, backend = excluded.backend,
                       device = excluded.device, droplab_version = excluded.droplab_version,
                       torch_version = excluded.torch_version,
                       python_version = excluded.python_version, error = excluded.error,
                       code_version = excluded.code_version, threads = excluded.threads
                   WHERE trials.status != 'finished'""",
                rows,
            )

    def mark_unfinished(self, hashes: Iterable[str] | None = None) -> int:
        """Turn ``running`` rows (all of them, or those in ``hashes``) into ``unfinished``.

        Called when a run is interrupted, and at the start of a run for rows left ``running``
        by a killed process. Returns the number of rows changed."""
        with self._write() as con:
            if hashes is None:
                cur = con.execute(
                    "UPDATE trials SET status = 'unfinished' WHERE status = 'running'"
                )
            else:
                cur = con.executemany(
                    "UPDATE trials SET status = 'unfinished' WHERE hash = ? AND status = 'running'",
                    [(h,) for h in hashes],
                )
            return cur.rowcount

    # -- reading --------------------------------------------------------------------------

    def statuses(self, hashes: Iterable[str]) -> dict[str, str]:
        """hash -> status for those of ``hashes`` that have a row."""
        out: dict[str, str] = {}
        hashes = list(hashes)
        for i in range(0, len(hashes), 500):  # stay below SQLite's parameter limit
            chunk = hashes[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._read(f"SELECT hash, status FROM trials WHERE hash IN ({marks})", chunk):
                out[r["hash"]] = r["status"]
        return out

    def finished(self, hashes: Iterable[str]) -> set[str]:
        """The subset of ``hashes`` that are finished (a re-run skips these)."""
        return {h for h, s in self.statuses(hashes).items() if s == "finished"}

    def studies(self) -> list[str]:
        """Names of the studies with at least one row, sorted."""
        return [r[0] for r in self._read("SELECT DISTINCT study FROM trials ORDER BY study")]

    def presets(self, study: str) -> list[str]:
        """Presets with finished trials of ``study``, sorted."""
        rows = self._read(
            "SELECT DISTINCT preset FROM trials WHERE study = ? AND status = 'finished' "
            "ORDER BY preset",
            (study,),
        )
        return [r[0] for r in rows]

    def frame(
        self, study: str, *, preset: str | None = None, status: str | None = None
    ) -> pd.DataFrame:
        """The trials of ``study`` as a DataFrame, one row per trial.

        Columns: ``hash, study, preset, seed, status``, then the config keys (sorted), then
        the metric keys (sorted; a metric whose name is already a column gets the prefix
        ``metric_``), then ``error, attempts, seconds, started_at, finished_at, host, backend,
        device, droplab_version, torch_version, python_version, code_version, threads, curves``
        (``curves`` a dict per row; ``threads`` nullable ``Int64``; ``code_version`` and
        ``threads`` are None/NA for trials stored before schema version 2, and in a
        version-1 store opened read-only). Lists in configs become tuples (hashable, so
        ``groupby`` works). Missing metrics (failed trials) are NaN. Row order is
        deterministic: preset, config, seed.
        """
        sql = "SELECT * FROM trials WHERE study = ?"
        params: list[Any] = [study]
        if preset is not None:
            sql += " AND preset = ?"
            params.append(preset)
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY preset, config, seed, hash"
        rows = self._read(sql, params)
        config_keys: set[str] = set()
        metric_keys: set[str] = set()
        parsed = []
        for r in rows:
            config = json.loads(r["config"])
            metrics = json.loads(r["metrics"]) if r["metrics"] else {}
            curves = json.loads(r["curves"]) if r["curves"] else {}
            config_keys.update(config)
            metric_keys.update(metrics)
            parsed.append((r, config, metrics, curves))
        config_cols = sorted(k for k in config_keys if k not in _META_COLUMNS)
        taken = set(_META_COLUMNS) | set(config_cols) | set(_TAIL_COLUMNS)
        metric_cols = {k: (f"metric_{k}" if k in taken else k) for k in sorted(metric_keys)}
        columns = [*_META_COLUMNS, *config_cols, *metric_cols.values(), *_TAIL_COLUMNS]
        records = []
        for r, config, metrics, curves in parsed:
            row: dict[str, Any] = {c: r[c] for c in _META_COLUMNS}
            for k in config_cols:
                row[k] = _hashable(config.get(k))
            for k, col in metric_cols.items():
                v = metrics.get(k)
                row[col] = math.nan if v is None else v
            for c in _TAIL_COLUMNS:
                # a version-1 store opened read-only has no version-2 columns: None
                row[c] = curves if c == "curves" else (r[c] if c in self._columns else None)
            records.append(row)
        frame = pd.DataFrame.from_records(records, columns=columns)
        return frame.astype(
            {**{c: "float64" for c in ("seconds", "started_at", "finished_at")}, "threads": "Int64"}
        )

    def status(self) -> pd.DataFrame:
        """Counts per study and preset: columns ``study, preset, finished, failed, running,
        unfinished, total`` (sorted by study, preset)."""
        rows = self._read(
            "SELECT study, preset, status, count(*) AS n FROM trials "
            "GROUP BY study, preset, status ORDER BY study, preset"
        )
        table: dict[tuple[str, str], dict[str, int]] = {}
        for r in rows:
            table.setdefault((r["study"], r["preset"]), dict.fromkeys(STATUSES, 0))[r["status"]] = (
                r["n"]
            )
        records = [
            {"study": s, "preset": p, **counts, "total": sum(counts.values())}
            for (s, p), counts in sorted(table.items())
        ]
        return pd.DataFrame.from_records(
            records, columns=["study", "preset", *STATUSES, "total"]
        ).astype({k: "int64" for k in (*STATUSES, "total")})

    def provenance(self) -> pd.DataFrame:
        """What produced the finished trials, per study and preset: columns ``study,
        preset, code, threads``, each the distinct recorded values joined by ", "
        ("not recorded" for trials of a version-1 store or a dead worker). More than one
        value means the study's numbers do not reproduce digit for digit from one checkout
        and one thread count."""
        cols = ("code_version", "threads")
        have = [c for c in cols if c in self._columns]
        sel = ", ".join(have) if have else "NULL"
        rows = self._read(
            f"SELECT DISTINCT study, preset, {sel} FROM trials WHERE status = 'finished' "
            "ORDER BY study, preset"
        )
        seen: dict[tuple[str, str], dict[str, set[str]]] = {}
        for r in rows:
            d = seen.setdefault((r["study"], r["preset"]), {"code": set(), "threads": set()})
            for col, name in zip(cols, ("code", "threads")):
                v = r[col] if col in have else None
                d[name].add("not recorded" if v is None else str(v))
        records = [
            {"study": s, "preset": p, **{k: ", ".join(sorted(v)) for k, v in d.items()}}
            for (s, p), d in sorted(seen.items())
        ]
        return pd.DataFrame.from_records(records, columns=["study", "preset", "code", "threads"])

    def errors(self, study: str) -> list[str]:
        """One line per failed trial of ``study``: its config, seed and error's last line."""
        rows = self._read(
            "SELECT config, seed, error FROM trials WHERE study = ? AND status = 'failed' "
            "ORDER BY preset, config, seed",
            (study,),
        )
        out = []
        for r in rows:
            last = (r["error"] or "").strip().splitlines()
            out.append(f"{r['config']} seed={r['seed']}: {last[-1] if last else 'unknown error'}")
        return out


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
