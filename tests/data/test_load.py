"""load(): names, options, shapes, determinism and train-only standardization."""

import random

import numpy as np
import pytest
import torch

from droplab import data

BUILTIN = ["mnist1d", "digits", "digits-image", "teacher", "teacher-regression", "diabetes"]


def tensors(ds):
    return [ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test]


def test_available_lists_every_dataset():
    assert data.available() == [*BUILTIN, "mnist", "fashion-mnist", "cifar10"]


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"'mnist2d'.*mnist1d, digits"):
        data.load("mnist2d")


def test_unknown_option_names_it_and_the_valid_ones():
    with pytest.raises(TypeError, match=r"unknown option n_trian=5.*n_train"):
        data.load("teacher", n_trian=5)


@pytest.mark.parametrize(
    ("name", "option", "message"),
    [
        ("digits", {"val_fraction": 1.5}, r"val_fraction must be in \[0.0, 1.0\), got 1.5"),
        ("mnist1d", {"num_samples": 505}, r"num_samples must be a multiple of 10, got 505"),
        ("teacher", {"noise": -0.1}, r"noise must be in \[0.0, 1.0\], got -0.1"),
        ("teacher", {"activation": "gelu"}, r"activation must be one of 'relu', 'tanh'"),
        ("teacher", {"n_train": 0}, r"n_train must be >= 1, got 0"),
        ("diabetes", {"n_val": 10_000}, r"n_val must be in \[0, \d+\], got 10000"),
    ],
)
def test_bad_option_values_name_argument_value_and_range(name, option, message):
    with pytest.raises(ValueError, match=message):
        data.load(name, **option)


def test_bad_types_are_type_errors():
    with pytest.raises(TypeError, match="seed must be an int"):
        data.load("digits", seed=1.0)
    with pytest.raises(TypeError, match="standardize must be True or False"):
        data.load("digits", standardize="yes")


@pytest.mark.parametrize(
    ("name", "sizes", "shape", "task"),
    [
        ("mnist1d", (3600, 400, 1000), (40,), "classification"),
        ("digits", (1294, 144, 359), (64,), "classification"),
        ("digits-image", (1294, 144, 359), (1, 8, 8), "classification"),
        ("teacher", (1000, 250, 2000), (20,), "classification"),
        ("teacher-regression", (1000, 250, 2000), (20,), "regression"),
        ("diabetes", (319, 35, 88), (10,), "regression"),
    ],
)
def test_shapes_dtypes_and_sizes(name, sizes, shape, task):
    ds = data.load(name, seed=3)
    assert ds.task == task and ds.input_shape == shape
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == sizes
    for x, y in [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]:
        assert x.dtype == torch.float32 and x.shape == (len(y), *shape)
        assert torch.isfinite(x).all()
        if task == "classification":
            assert y.dtype == torch.int64 and 0 <= y.min() and y.max() < ds.n_classes
        else:
            assert y.dtype == torch.float32
    assert ds.n_outputs == (10 if task == "classification" else 1)
    assert ds.n_classes == (10 if task == "classification" else None)


@pytest.mark.parametrize("name", BUILTIN)
def test_same_arguments_same_bytes(name):
    a, b = data.load(name, seed=5), data.load(name, seed=5)
    for ta, tb in zip(tensors(a), tensors(b)):
        assert ta.dtype == tb.dtype and torch.equal(ta, tb)


@pytest.mark.parametrize("name", BUILTIN)
def test_different_seeds_give_different_val_splits(name):
    a, b = data.load(name, seed=0), data.load(name, seed=1)
    assert not torch.equal(a.x_val, b.x_val)
    if name.startswith("teacher"):  # the whole sample comes from the seed
        assert not torch.equal(a.x_test, b.x_test)
    else:  # a fixed test set, so every trial of a study is scored on the same points
        torch.testing.assert_close(a.y_test * a.y_scale + a.y_mean, b.y_test * b.y_scale + b.y_mean)


def test_mnist1d_generation_is_pure_and_leaves_global_rngs_alone():
    np.random.seed(123)  # noqa: NPY002 - the test checks the caller's global state survives
    random.seed(123)
    a = data.load("mnist1d", num_samples=200, cache=False)
    after = (np.random.rand(), random.random())  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    assert after == (np.random.rand(), random.random())  # noqa: NPY002
    b = data.load("mnist1d", num_samples=200, cache=False)
    for ta, tb in zip(tensors(a), tensors(b)):
        assert torch.equal(ta, tb)
    assert (len(a.y_train) + len(a.y_val), len(a.y_test)) == (160, 40)


def test_mnist1d_options_change_the_data():
    base = data.load("mnist1d", num_samples=200, cache=False)
    other = data.load("mnist1d", num_samples=200, generation_seed=7, cache=False)
    assert not torch.equal(base.x_test, other.x_test)
    big = data.load("mnist1d", num_samples=300, train_split=0.5, n_val=20, cache=False)
    assert (len(big.y_train), len(big.y_val), len(big.y_test)) == (130, 20, 150)


def test_train_and_val_partition_the_pool():
    """Seeds move points between train and val, never in or out of the pool."""
    rows = []
    for seed in (0, 1):
        ds = data.load("digits", seed=seed, standardize=False)
        both = torch.cat([ds.x_train, ds.x_val])
        rows.append(sorted(map(bytes, both.numpy().astype(np.uint8))))
        train = {bytes(r) for r in ds.x_train.numpy().astype(np.uint8)}
        val = {bytes(r) for r in ds.x_val.numpy().astype(np.uint8)}
        assert not ({r for r in train} & val) or len(train | val) < len(both)
    assert rows[0] == rows[1]


@pytest.mark.parametrize("name", ["mnist1d", "digits", "teacher"])
def test_val_split_is_stratified(name):
    ds = data.load(name, seed=2)
    pool = torch.cat([ds.y_train, ds.y_val])
    want = torch.bincount(pool, minlength=10) * len(ds.y_val) / len(pool)
    got = torch.bincount(ds.y_val, minlength=10)
    assert (got - want).abs().max() < 1.0  # largest-remainder allocation: within one


@pytest.mark.parametrize("name", ["digits", "digits-image", "mnist1d", "diabetes"])
def test_standardization_uses_train_statistics_only(name):
    raw = data.load(name, seed=4, standardize=False)
    ds = data.load(name, seed=4)
    xr = raw.x_train.double().numpy()
    axes = (0, 2, 3) if ds.standardization == "channel" else (0,)
    mean, std = xr.mean(axis=axes), xr.std(axis=axes)
    std = np.where(std < 1e-6, 1.0, std)  # constant pixels are only centred
    np.testing.assert_allclose(ds.x_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.x_std.numpy(), std, rtol=1e-5)
    shape = (-1, 1, 1) if ds.standardization == "channel" else (-1,)
    for z, r in [(ds.x_val, raw.x_val), (ds.x_test, raw.x_test)]:
        want = (r.double().numpy() - mean.reshape(shape)) / std.reshape(shape)
        np.testing.assert_allclose(z.numpy(), want, rtol=1e-5, atol=1e-5)
    # train is centred up to float32 rounding (~1e-8); val/test only approximately, since
    # their own means differ from train's (by 7e-5 at the least here: digits-image test).
    assert ds.x_train.double().mean(dim=axes).abs().max() < 1e-6
    assert ds.x_val.double().mean(dim=axes).abs().max() > 1e-5
    assert ds.x_test.double().mean(dim=axes).abs().max() > 1e-5


@pytest.mark.parametrize("name", ["diabetes", "teacher-regression"])
def test_regression_targets_standardized_on_train_with_recorded_scale(name):
    raw = data.load(name, seed=1, standardize=False)
    ds = data.load(name, seed=1)
    y = raw.y_train.double().numpy()
    assert ds.y_mean == pytest.approx(y.mean(), rel=1e-9)
    assert ds.y_scale == pytest.approx(y.std(), rel=1e-9)
    for z, r in [(ds.y_train, raw.y_train), (ds.y_val, raw.y_val), (ds.y_test, raw.y_test)]:
        torch.testing.assert_close(z * ds.y_scale + ds.y_mean, r, rtol=1e-5, atol=1e-3)
    assert abs(float(ds.y_test.double().mean())) > 1e-4  # test is not re-centred


def test_teacher_regression_signal_has_unit_variance():
    # Var y = Var f + noise^2 = 1 + 0.25. Sampling error of the variance: relative sd about
    # sqrt(2/20000) = 0.01 for the sample and sqrt(2/4096) = 0.022 for the probe that
    # normalizes f; 0.15 is more than 5 sigma of both together.
    ds = data.load("teacher-regression", n_train=20_000, noise=0.5)
    assert ds.y_scale**2 / 1.25 == pytest.approx(1.0, abs=0.15)


def test_teacher_label_noise_replaces_the_stated_fraction():
    # With probability p a label is redrawn uniformly, so it still agrees with the clean
    # label with probability 1 - p + p/k = 0.55 (p = 0.5, k = 10). Over 20000 test
    # points the sd is sqrt(.55 * .45 / 20000) = 0.0035; bound 0.018 = 5 sigma.
    clean = data.load("teacher", seed=9, n_test=20_000, standardize=False)
    noisy = data.load("teacher", seed=9, n_test=20_000, noise=0.5, standardize=False)
    assert torch.equal(clean.x_test, noisy.x_test)
    agree = (clean.y_test == noisy.y_test).double().mean().item()
    assert abs(agree - 0.55) < 0.018


def test_teacher_seed_pins_the_teacher_not_the_sample():
    a = data.load("teacher", seed=1, teacher_seed=0, standardize=False)
    b = data.load("teacher", seed=1, teacher_seed=5, standardize=False)
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.y_test, b.y_test)
    c = data.load("teacher", seed=1)  # default: the teacher comes from the seed
    assert torch.equal(c.y_test, data.load("teacher", seed=1, teacher_seed=1).y_test)


def test_teacher_classes_all_occur():
    ds = data.load("teacher", seed=0)
    counts = torch.bincount(torch.cat([ds.y_train, ds.y_test]), minlength=10)
    assert (counts > 0).all(), counts


def test_repr_is_short_and_informative():
    text = repr(data.load("digits-image"))
    assert text.startswith("Dataset('digits-image', classification, train=1294, val=144")
    assert "input_shape=(1, 8, 8)" in text and len(text) < 200


def test_to_moves_every_tensor():
    ds = data.load("digits")
    assert ds.to("cpu") is ds
    moved = ds.to("meta")
    assert all(t.device.type == "meta" for t in [*tensors(moved), moved.x_mean, moved.x_std])
    assert "device=meta" in repr(moved) and ds.device.type == "cpu"


def test_options_lists_defaults():
    opts = data.options("mnist1d")
    assert opts["num_samples"] == 5000 and opts["generation_seed"] == 42


def test_mnist1d_is_the_packages_generator_with_its_default_arguments():
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    ours = data.load("mnist1d", num_samples=100, n_val=0, standardize=False, cache=False)
    args = get_dataset_args(as_dict=True)
    assert {k: v for k, v in args.items() if k != "url"} == {
        **ours.meta["generation_args"],
        "num_samples": 5000,
    }
    state = np.random.get_state()  # noqa: NPY002 - make_dataset seeds the global RNG
    try:
        ref = make_dataset(ObjectView({**args, "num_samples": 100}))
    finally:
        np.random.set_state(state)  # noqa: NPY002
    assert torch.equal(ours.x_train, torch.from_numpy(ref["x"].astype(np.float32)))
    assert torch.equal(ours.y_train, torch.from_numpy(ref["y"]))
    assert torch.equal(ours.x_test, torch.from_numpy(ref["x_test"].astype(np.float32)))


def test_dataset_pickles_for_worker_processes():
    import pickle

    ds = data.load("teacher-regression", n_train=50, n_test=20)
    back = pickle.loads(pickle.dumps(ds))
    assert repr(back) == repr(ds) and back.y_scale == ds.y_scale
    for ta, tb in zip(tensors(ds), tensors(back)):
        assert torch.equal(ta, tb)


def test_from_arrays_checks_its_inputs():
    x, y = np.zeros((10, 3)), np.arange(10) % 2
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\), got min 0 max 2"):
        data.from_arrays(
            "mine", "classification", x, y, x[:2], np.array([0, 2]), seed=0, n_val=2, n_classes=2
        )
    with pytest.raises(ValueError, match=r"shapes disagree"):
        data.from_arrays(
            "mine", "classification", x, y, x[:2, :2], y[:2], seed=0, n_val=2, n_classes=2
        )
    with pytest.raises(ValueError, match=r"task must be 'classification' or 'regression'"):
        data.from_arrays("mine", "ranking", x, y, x, y, seed=0, n_val=2)
    ds = data.from_arrays("mine", "regression", x, y * 1.0, x[:4], y[:4] * 1.0, seed=0, n_val=2)
    assert ds.input_shape == (3,) and len(ds.y_train) == 8 and ds.n_outputs == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_copy_and_subset_match_cpu():
    ds = data.load("digits-image", seed=0)
    gpu = ds.to("cuda")
    assert gpu.x_train.is_cuda and gpu.x_std.is_cuda
    a, b = ds.subset(77, seed=2), gpu.subset(77, seed=2)
    assert b.x_train.is_cuda
    for ta, tb in zip(tensors(a), tensors(b)):
        torch.testing.assert_close(ta, tb.cpu(), rtol=0, atol=1e-6)
