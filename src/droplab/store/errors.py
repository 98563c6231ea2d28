"""What the store says when its file cannot be used: :class:`StoreError`, and the
translation of SQLite's errors into one line that tells the user what to do.

Every failure of the store reaches the user as a :class:`StoreError` (a ``ValueError``);
the CLI prints its message and exits with code 2.
"""

from __future__ import annotations

import os
import sqlite3

__all__ = ["StoreError", "translate"]


class StoreError(ValueError):
    """The store file cannot be used: not a droplab store, damaged, newer schema,
    read-only, or locked by another run. The message is one line meant for the user."""


def translate(error: sqlite3.Error, path: str | os.PathLike[str]) -> StoreError:
    """The :class:`StoreError` for an SQLite error raised while using the store at
    ``path``: not an SQLite file, damaged, disk full, read-only, or else SQLite's text."""
    msg = str(error)
    if "not a database" in msg:
        return StoreError(
            f"{path} is not a droplab store (not an SQLite file); left untouched: "
            "pass another --store"
        )
    if "malformed" in msg or "corrupt" in msg:
        return StoreError(
            f"store {path} is damaged (truncated or corrupt: {msg}); "
            "restore it from a copy or start a new --store"
        )
    if "full" in msg or "disk I/O error" in msg:
        return StoreError(
            f"cannot write to store {path} ({msg}; is the disk full?); the finished "
            "trials are kept: free some space and run the same command again to resume"
        )
    if "readonly" in msg or "read-only" in msg:
        return StoreError(f"store {path} is read-only ({msg}); pass a writable --store")
    return StoreError(f"store {path}: {msg}")
