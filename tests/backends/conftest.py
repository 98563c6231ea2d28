from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

FAKE_DIR = str(Path(__file__).parent)
if FAKE_DIR not in sys.path:
    sys.path.insert(0, FAKE_DIR)  # `import fake_study` here, in spawned workers and in Ray
# Set before any worker pool starts, so forkserver workers inherit it (see fake_study).
os.environ.setdefault("FAKE_STUDY_CONTROL", tempfile.mkdtemp(prefix="fake-study-"))


@pytest.fixture(autouse=True)
def _no_fake_env(monkeypatch):
    for name in ("FAKE_STUDY_SLEEP", "FAKE_STUDY_FAIL", "FAKE_STUDY_LOG"):
        monkeypatch.delenv(name, raising=False)
    exit_file = Path(os.environ["FAKE_STUDY_CONTROL"]) / "exit"
    exit_file.unlink(missing_ok=True)
    yield
    exit_file.unlink(missing_ok=True)
