"""The Ray backend: one Ray task per trial group; only the driver writes to the store.

``address=None`` starts a local Ray (small: the CPUs of this machine, no dashboard) and
shuts it down at the end; an address connects to a running cluster, whose nodes must have
droplab (and the user's model/data modules) installed. A task whose worker process died is
retried ``max_retries`` times by Ray; an exception inside ``run_group`` is not retried (it
would fail again) but stored as a failed trial.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

from droplab.backends.common import BackendError, Outcome, execute_group, failed_outcome
from droplab.studies.base import Study, Trial

__all__ = ["RayBackend", "import_ray"]

MAX_RETRIES = 3


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendError(
            "the ray backend needs Ray, which is not installed: pip install 'droplab[ray]'"
        ) from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connect to ``host:port`` first: ``ray.init`` waits minutes on a dead address."""
    if address == "auto" or address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BackendError(
            f"--address must look like host:port (GCS, e.g. 10.0.0.1:6379) or "
            f"ray://host:port (Ray client, e.g. ray://10.0.0.1:10001), got {address!r}"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise BackendError(f"cannot reach the Ray cluster at {address!r}: {reason}") from None


class RayBackend:
    """Trial groups as Ray tasks (``num_cpus=1`` each, ``num_gpus=1`` on cuda).

    Args:
        address: cluster address, or None for a local Ray started here.
        workers: groups in flight at once (default: the cluster's CPU count).
        device: ``"cpu"`` or ``"cuda"``.
        num_cpus: CPUs of the local Ray (default: this machine's).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int = 1,
        device: str = "cpu",
        num_cpus: int | None = None,
    ):
        ray = import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": "ERROR",
                "configure_logging": False,
            }
            if address:
                _check_reachable(address)
                try:
                    ray.init(address=address, **options)
                except Exception as e:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise BackendError(
                        f"cannot reach the Ray cluster at {address!r}: {first}"
                    ) from None
            else:
                # Workers of a local Ray inherit this environment: give them our sys.path, so
                # modules importable here (the user's --model/--data, test studies) import there.
                saved = os.environ.get("PYTHONPATH")
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
                try:
                    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **options)
                finally:
                    if saved is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = saved
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers if workers > 1 else max(1, cpus)
        resources: dict[str, Any] = {"num_cpus": 1}
        if device.startswith("cuda"):
            resources["num_gpus"] = 1
        self._task = ray.remote(max_retries=MAX_RETRIES, **resources)(execute_group)

    def run(
        self,
        study: Study,
        groups: list[list[Trial]],
        device: str,
        on_start: Callable[[list[Trial]], None],
    ) -> Iterator[tuple[list[Trial], Outcome]]:
        ray = self._ray
        todo = list(groups)
        in_flight: dict[Any, list[Trial]] = {}
        study_ref = ray.put(study)
        try:
            while todo or in_flight:
                while todo and len(in_flight) < self.workers:
                    group = todo.pop(0)
                    on_start(group)
                    in_flight[self._task.remote(study_ref, group, device)] = group
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    group = in_flight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as e:  # worker died more than MAX_RETRIES times, ...
                        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                        outcome = failed_outcome(f"ray task failed: {type(e).__name__}: {first}")
                    yield group, outcome
        finally:
            for ref in in_flight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished or gone; nothing to cancel
                    pass

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False
