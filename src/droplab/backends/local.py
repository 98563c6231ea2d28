"""The local backend: trial groups in this process, or in a pool of spawned processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from droplab.backends.common import Outcome, execute_group, failed_outcome
from droplab.studies.base import Study, Trial

__all__ = ["LocalBackend"]


def _init_worker(threads: int) -> None:
    # Ctrl-C reaches the whole process group: only the driver handles it (it stops the
    # workers and marks their trials unfinished).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Share the cores between the workers instead of oversubscribing them.
    import torch

    torch.set_num_threads(threads)


class LocalBackend:
    """Run groups here (``workers=1``) or in ``workers`` spawned processes.

    Workers start clean (forkserver, or spawn where there is none): no inherited torch
    threads or locks; they see the environment of the first pool's start. A worker
    that dies (out of memory, killed) fails its group with a clear error; the pool is
    rebuilt and the remaining groups go on; the next run retries the failed ones.
    """

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        if "forkserver" in multiprocessing.get_all_start_methods():
            # A clean server process (spawned, no threads) imports droplab once; workers
            # fork from it, so a pool (re)starts in milliseconds instead of one import each.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["droplab.backends.common"])
        else:  # Windows
            context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(threads,),
        )

    def run(
        self,
        study: Study,
        groups: list[list[Trial]],
        device: str,
        on_start: Callable[[list[Trial]], None],
    ) -> Iterator[tuple[list[Trial], Outcome]]:
        if self.workers == 1:
            for group in groups:
                on_start(group)
                yield group, execute_group(study, group, device)
            return
        todo = deque(enumerate(groups))
        in_flight: dict[Future[Outcome], tuple[int, list[Trial]]] = {}
        suspects: set[int] = set()  # groups in flight when a worker died
        try:
            while todo or in_flight:
                if self._pool is None:
                    self._pool = self._new_pool()
                # At most `workers` groups in flight (so "running" in the store means running);
                # a suspect runs alone, so a second death convicts it and nobody else.
                while todo and len(in_flight) < self.workers:
                    index, group = todo[0]
                    if index in suspects and in_flight:
                        break
                    todo.popleft()
                    on_start(group)
                    try:
                        future = self._pool.submit(execute_group, study, group, device)
                    except BrokenProcessPool:
                        # a worker died since the last wait: this group never started; it
                        # waits while the groups in flight are sorted out below
                        todo.appendleft((index, group))
                        break
                    in_flight[future] = (index, group)
                    if index in suspects:
                        break
                if not in_flight:  # the pool broke with nothing in flight: start a new one
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                    continue
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    except Exception as e:  # e.g. a result that cannot be pickled
                        outcome = failed_outcome(f"worker error: {e!r}")
                    yield in_flight.pop(future)[1], outcome
                if broken:
                    # A worker died (killed, out of memory, os._exit): every group in flight
                    # is lost. One that ran alone is the culprit; the others run again, alone.
                    alone = len(in_flight) == 1
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                    for index, group in sorted(in_flight.values(), key=lambda ig: -ig[0]):
                        if alone or index in suspects:
                            yield (
                                group,
                                failed_outcome(
                                    "worker process died (killed, out of memory or os._exit)"
                                ),
                            )
                        else:
                            suspects.add(index)
                            todo.appendleft((index, group))
                    in_flight.clear()
        finally:
            if in_flight and self._pool is not None:  # interrupted: stop the workers now
                self._kill_pool()

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())  # no public API for this
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
