"""The MNIST-1D disk cache: round trip, corrupt entries, unwritable directories."""

import pytest
import torch

from droplab import data


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def same(a, b):
    pairs = [(a.x_train, b.x_train), (a.y_train, b.y_train), (a.x_val, b.x_val)]
    pairs += [(a.x_test, b.x_test), (a.y_test, b.y_test)]
    return all(torch.equal(p, q) for p, q in pairs)


def test_round_trip_gives_the_generated_bytes(cache):
    assert data.cache_dir() == cache
    first = data.load("mnist1d", num_samples=200)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("mnist1d-") and files[0].suffix == ".npz"
    stamp = files[0].stat().st_mtime_ns
    second = data.load("mnist1d", num_samples=200)  # read from the cache
    assert files[0].stat().st_mtime_ns == stamp
    assert same(first, second)
    assert same(first, data.load("mnist1d", num_samples=200, cache=False))
    data.load("mnist1d", num_samples=200, generation_seed=1)  # other args: another entry
    assert len(list(cache.iterdir())) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty"])
def test_corrupt_entry_is_regenerated(cache, damage):
    first = data.load("mnist1d", num_samples=100)
    (path,) = cache.iterdir()
    content = path.read_bytes()
    broken = {"garbage": b"not a zip file", "truncate": content[: len(content) // 2], "empty": b""}
    path.write_bytes(broken[damage])
    again = data.load("mnist1d", num_samples=100)
    assert same(first, again)
    assert path.read_bytes() == content  # rewritten whole
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temp files left


def test_unwritable_cache_warns_and_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("DROPLAB_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not write the cache"):
        ds = data.load("mnist1d", num_samples=100)
    assert len(ds.y_test) == 20
