"""The store's read/write API: :class:`Store`, one SQLite file opened with stdlib
:mod:`sqlite3`.

Write-ahead logging lets readers work beside the writer (``droplab status`` works while a
run is going), with a busy timeout for concurrent access. The file format, its checks and
migrations live in :mod:`droplab.store.schema`; what a trial is and its hash in
:mod:`droplab.store.identity`; the run lock in :mod:`droplab.store.lock`.

A trial (or a whole group of trials trained together) is written in ONE transaction, so a
process killed at any instant leaves either the complete row or the previous state.
Finished trials are never overwritten by a later run; failed and unfinished ones are
retried. Only the driver process writes; workers return results.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from droplab.store.errors import StoreError, translate
from droplab.store.identity import STATUSES, TrialRecord, canonical_json
from droplab.store.lock import RunLock
from droplab.store.schema import check_header, check_or_create

__all__ = ["Store"]

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
        self._con = self._connect()
        try:
            # the columns of `trials` as the file has them (a version-1 store read as is
            # lacks the version-2 columns)
            self._columns = check_or_create(self._con, self.path, readonly=self.readonly)
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
            check_header(p)
            uri = f"file:{quote(str(p.resolve()))}?mode=ro"
            if not os.access(p.parent, os.W_OK):
                # WAL readers need to create <db>-shm; on a read-only folder read the file as is.
                uri += "&immutable=1"
            return self._wrap_connect(
                lambda: sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            )
        if p.exists():
            check_header(p)
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
            raise translate(e, self.path) from None

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._con.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as e:
            raise translate(e, self.path) from None

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
