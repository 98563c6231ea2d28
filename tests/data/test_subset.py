"""Dataset.subset: learning curves with a refitted standardization."""

import pytest
import torch

from droplab import data


def raw_rows(x, ds):
    """Undo a dataset's standardization (rows back in original units, as a set of tuples)."""
    if ds.standardization == "channel":
        c = ds.x_mean.shape[0]
        g = x.double().reshape(len(x), c, -1)
        x = g * ds.x_std.double()[:, None] + ds.x_mean.double()[:, None]
    else:
        x = x.double() * ds.x_std.double() + ds.x_mean.double()
    return {tuple(r) for r in x.reshape(len(x), -1).round().long().tolist()}


def test_subset_sizes_and_determinism():
    ds = data.load("digits", seed=0)
    a, b, c = ds.subset(100, seed=1), ds.subset(100, seed=1), ds.subset(100, seed=2)
    assert len(a.y_train) == 100 and a.x_train.shape == (100, 64)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_train, c.y_train)
    assert len(a.y_val) == len(ds.y_val) and len(a.y_test) == len(ds.y_test)
    assert a.meta["subset"] == {"n_train": 100, "seed": 1}
    assert len(ds.subset(len(ds.y_train), seed=0).y_train) == len(ds.y_train)


def test_subset_is_stratified():
    ds = data.load("mnist1d", seed=0)
    for n in (10, 37, 500):
        sub = ds.subset(n, seed=3)
        want = torch.bincount(ds.y_train, minlength=10) * n / len(ds.y_train)
        got = torch.bincount(sub.y_train, minlength=10)
        assert (got - want).abs().max() < 1.0, (n, got, want)


def test_subset_draws_train_points_and_keeps_val_test_points():
    # digits pixels are integers 0..16, so rounding recovers the raw rows exactly.
    ds = data.load("digits", seed=0)
    sub = ds.subset(60, seed=4)
    assert raw_rows(sub.x_train, sub) <= raw_rows(ds.x_train, ds)
    torch.testing.assert_close(
        sub.x_test * sub.x_std + sub.x_mean, ds.x_test * ds.x_std + ds.x_mean
    )
    torch.testing.assert_close(sub.x_val * sub.x_std + sub.x_mean, ds.x_val * ds.x_std + ds.x_mean)
    assert torch.equal(sub.y_val, ds.y_val) and torch.equal(sub.y_test, ds.y_test)


@pytest.mark.parametrize("name", ["digits", "digits-image", "teacher-regression"])
def test_subset_refits_standardization_on_the_subset(name):
    ds = data.load(name, seed=0)
    sub = ds.subset(50, seed=0)
    axes = (0, 2, 3) if ds.standardization == "channel" else (0,)
    assert sub.x_train.double().mean(dim=axes).abs().max() < 1e-5
    assert not torch.equal(sub.x_mean, ds.x_mean)
    if ds.task == "regression":
        assert abs(sub.y_train.double().mean().item()) < 1e-5
        assert sub.y_train.double().std(unbiased=False).item() == pytest.approx(1.0, rel=1e-4)
        torch.testing.assert_close(
            sub.y_test * sub.y_scale + sub.y_mean, ds.y_test * ds.y_scale + ds.y_mean
        )


def test_subset_bad_sizes():
    ds = data.load("diabetes")
    with pytest.raises(ValueError, match=r"n_train must be in \[1, 319\].*got 0"):
        ds.subset(0, seed=0)
    with pytest.raises(ValueError, match=r"got 320"):
        ds.subset(320, seed=0)
    with pytest.raises(TypeError, match="n_train must be an int"):
        ds.subset(10.0, seed=0)


def test_subset_without_standardization_only_selects():
    ds = data.load("teacher", seed=0, standardize=False)
    sub = ds.subset(30, seed=0)
    assert sub.standardization == "none" and sub.x_mean is None
    rows = {tuple(r) for r in ds.x_train.tolist()}
    assert all(tuple(r) in rows for r in sub.x_train.tolist())
