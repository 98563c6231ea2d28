import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One cache directory for the whole session: MNIST-1D is generated once (~3 s)."""
    return tmp_path_factory.mktemp("droplab-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache, monkeypatch):
    monkeypatch.setenv("DROPLAB_CACHE", str(session_cache))
