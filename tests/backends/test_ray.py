"""The Ray backend, for real, on a local Ray (one start for the whole module: ~10-20 s)."""

from __future__ import annotations

import socket

import fake_study
import pandas as pd
import pytest

from droplab.backends import BackendError, run_study
from droplab.store import Store

pytest.importorskip("ray")
from droplab.backends.ray import RayBackend

STUDY = fake_study.STUDY
SAME = ["hash", "study", "preset", "seed", "status", "arm", "x", "test_error", "curves"]


def test_ray_stores_the_same_results_as_local(tmp_path):
    trials = STUDY.expand("quick")
    with Store(tmp_path / "local.db") as local:
        run_study(STUDY, trials, local)
        expected = local.frame("fake")[SAME]
        local_code = local.frame("fake")["code_version"].tolist()
    backend = RayBackend(num_cpus=2)
    try:
        with Store(tmp_path / "ray.db") as store:
            summary = run_study(STUDY, trials, store, backend=backend)
            assert (summary.finished, summary.failed) == (18, 0)
            frame = store.frame("fake")
            assert set(frame["backend"]) == {"ray"}
            # provenance comes from the Ray worker that trained each trial
            assert frame["threads"].notna().all() and (frame["threads"] >= 1).all()
            assert frame["code_version"].tolist() == local_code
            pd.testing.assert_frame_equal(frame[SAME], expected)
            again = run_study(STUDY, trials, store, backend=backend)
            assert (again.skipped, again.finished) == (18, 0)
    finally:
        backend.close()


def test_unreachable_address_fails_fast():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match=f"cannot reach the Ray cluster at '127.0.0.1:{port}'"):
        RayBackend(address=f"127.0.0.1:{port}")
    with pytest.raises(BackendError, match="--address must look like host:port"):
        RayBackend(address="nonsense")
