"""The run lock: one ``droplab run`` at a time writes to a store.

:class:`RunLock` is an exclusive advisory lock (``flock``) on ``<store>.lock``. It lives
beside the SQLite file rather than in it because SQLite's own locks last one transaction,
while a run must own its trials from the moment it expands them until it ends.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from droplab.store.errors import StoreError

try:  # POSIX advisory locks; on other platforms runs are not protected from each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock"]


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
