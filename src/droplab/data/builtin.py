"""Datasets that need no files: MNIST-1D (generated locally), scikit-learn's digits and
diabetes, and a synthetic teacher-student task.

Each builder is a pure function of (options, seed) and returns a :class:`Dataset`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import random
import tempfile
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from droplab import rng
from droplab.data._checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    resolve_n_val,
)
from droplab.data.dataset import Dataset, from_arrays, pick

__all__ = ["cache_dir", "diabetes", "digits", "mnist1d", "teacher", "teacher_regression"]

# ---------------------------------------------------------------------------------------
# MNIST-1D (Greydanus 2020, "Scaling down deep learning"): 10 one-dimensional templates,
# padded, scaled, translated, sheared and noised into 40-point signals.

_CACHE_FORMAT = 1
# mnist1d's generator draws from numpy's and Python's global RNGs (it seeds them itself);
# we save and restore both around the call, under a lock, so callers see no side effect.
_GLOBAL_RNG_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$DROPLAB_CACHE`` or ``~/.cache/droplab``."""
    env = os.environ.get("DROPLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "droplab"


def _mnist1d_generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    with _GLOBAL_RNG_LOCK:
        np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
        try:
            raw = make_dataset(ObjectView(dict(args)))  # never its download path
        finally:
            np.random.set_state(np_state)  # noqa: NPY002
            random.setstate(py_state)
    return {
        "x": np.asarray(raw["x"], dtype=np.float32),
        "y": np.asarray(raw["y"], dtype=np.int64),
        "x_test": np.asarray(raw["x_test"], dtype=np.float32),
        "y_test": np.asarray(raw["y_test"], dtype=np.int64),
    }


def _mnist1d_arrays(args: dict[str, Any], use_cache: bool) -> dict[str, np.ndarray]:
    """The generated arrays, from the cache when a valid entry exists."""
    n = args["num_samples"] // 10 * 10
    n_pool = int(n * args["train_split"])
    shapes = {
        "x": (n_pool, args["final_seq_length"]),
        "y": (n_pool,),
        "x_test": (n - n_pool, args["final_seq_length"]),
        "y_test": (n - n_pool,),
    }
    if not use_cache:
        return _mnist1d_generate(args)
    try:
        version = importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    key_src = json.dumps(
        {"args": args, "mnist1d": version, "format": _CACHE_FORMAT}, sort_keys=True
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = cache_dir() / f"mnist1d-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in shapes}
            if all(arrays[k].shape == s for k, s in shapes.items()):
                return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # corrupt or truncated entry: regenerate and overwrite it below
    arrays = _mnist1d_generate(args)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except OSError as err:  # a read-only cache must not stop the run
        warnings.warn(f"mnist1d: could not write the cache {path}: {err}", stacklevel=3)
    return arrays


def mnist1d(
    seed: int,
    data_dir: str | None = None,
    *,
    num_samples: int = 5000,
    train_split: float = 0.8,
    val_fraction: float = 0.1,
    n_val: int | None = None,
    generation_seed: int = 42,
    shuffle_seq: bool = False,
    standardize: bool = True,
    cache: bool = True,
) -> Dataset:
    """MNIST-1D, generated locally by the ``mnist1d`` package's own generator.

    With the defaults this is the paper's dataset (Greydanus 2020): 5000 signals of
    length 40, 10 classes, generator seed 42, 4000 for training and 1000 for testing.
    The validation split (``val_fraction`` of the 4000, or ``n_val``) is carved out of the
    training pool by ``seed``; the test set does not depend on ``seed``.

    Options:
        num_samples: total signals, a multiple of 10 (``num_samples // 10`` per class).
        train_split: fraction of the signals in the training pool (the paper: 0.8).
        generation_seed: the generator's seed (42 is the published dataset).
        shuffle_seq: permute the 40 positions (the paper's "shuffled" control).
        cache: keep generated arrays in :func:`cache_dir` (generation takes seconds).

    Shapes: x (n, 40) float32; y (n,) int64 in [0, 10).
    """
    num_samples = check_int("mnist1d: num_samples", num_samples, low=20)
    if num_samples % 10:
        raise ValueError(f"mnist1d: num_samples must be a multiple of 10, got {num_samples}")
    train_split = check_float(
        "mnist1d: train_split", train_split, low=0.0, high=1.0, low_open=True, high_open=True
    )
    n_pool = int(num_samples * train_split)
    if not 2 <= n_pool <= num_samples - 1:
        raise ValueError(
            f"mnist1d: train_split={train_split} leaves {n_pool} of {num_samples} signals "
            "for training; both train and test need at least one"
        )
    args = {
        "num_samples": num_samples,
        "train_split": train_split,
        "template_len": 12,
        "padding": [36, 60],
        "scale_coeff": 0.4,
        "max_translation": 48,
        "corr_noise_scale": 0.25,
        "iid_noise_scale": 2e-2,
        "shear_scale": 0.75,
        "shuffle_seq": check_bool("mnist1d: shuffle_seq", shuffle_seq),
        "final_seq_length": 40,
        "seed": check_int("mnist1d: generation_seed", generation_seed, low=0, high=2**32 - 1),
    }
    arrays = _mnist1d_arrays(args, check_bool("mnist1d: cache", cache))
    return from_arrays(
        "mnist1d",
        "classification",
        arrays["x"],
        arrays["y"],
        arrays["x_test"],
        arrays["y_test"],
        seed=seed,
        n_val=resolve_n_val("mnist1d", len(arrays["y"]), val_fraction, n_val),
        n_classes=10,
        standardize=check_bool("mnist1d: standardize", standardize),
        meta={"generator": "mnist1d.data.make_dataset", "generation_args": args},
    )


# ---------------------------------------------------------------------------------------
# scikit-learn's bundled sets: no official test split, so one is carved by `test_seed`
# (not by `seed`), and every trial of a study is scored on the same test points.


def _carve_test(
    name: str, y: np.ndarray | None, n: int, test_fraction: float, test_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    frac = check_float(
        f"{name}: test_fraction", test_fraction, low=0.0, high=1.0, low_open=True, high_open=True
    )
    n_test = min(max(round(frac * n), 1), n - 2)
    test_seed = check_int(f"{name}: test_seed", test_seed, low=0)
    test_idx = pick(y, n, n_test, rng.numpy_rng(test_seed, "data", "test"))
    keep = np.ones(n, dtype=bool)
    keep[test_idx] = False
    return np.flatnonzero(keep), test_idx


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.flags.writeable = False  # shared by every call through the lru_cache
    return arrays


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _frozen(x.astype(np.float32), y.astype(np.int64))  # (1797, 64) in 0..16, (1797,)


@functools.lru_cache(maxsize=1)
def _sklearn_diabetes() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, scaled=False)
    return _frozen(x.astype(np.float32), y.astype(np.float32))  # (442, 10), (442,)


def _digits(name: str, seed: int, image: bool, opts: dict[str, Any]) -> Dataset:
    x, y = _sklearn_digits()  # cached: callers only index (copy), never write
    pool, test = _carve_test(name, y, len(y), opts["test_fraction"], opts["test_seed"])
    if image:
        x = x.reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8)
    return from_arrays(
        name,
        "classification",
        x[pool],
        y[pool],
        x[test],
        y[test],
        seed=seed,
        n_val=resolve_n_val(name, len(pool), opts["val_fraction"], opts["n_val"]),
        n_classes=10,
        channels=1 if image else None,
        standardize=check_bool(f"{name}: standardize", opts["standardize"]),
        meta={"source": "sklearn.datasets.load_digits", "test_seed": opts["test_seed"]},
    )


def digits(
    seed: int,
    data_dir: str | None = None,
    *,
    test_fraction: float = 0.2,
    test_seed: int = 0,
    val_fraction: float = 0.1,
    n_val: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """scikit-learn's 1797 handwritten 8x8 digits as 64-vectors (UCI optdigits test set).

    The test split (``test_fraction``, stratified) is drawn by ``test_seed``; the
    validation split (``val_fraction`` of the rest) by ``seed``. Standardized per pixel.
    Shapes: x (n, 64) float32; y (n,) int64 in [0, 10).
    """
    return _digits("digits", seed, False, locals())


def digits_image(
    seed: int,
    data_dir: str | None = None,
    *,
    test_fraction: float = 0.2,
    test_seed: int = 0,
    val_fraction: float = 0.1,
    n_val: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """The same digits and splits as ``digits``, as (1, 8, 8) images standardized with
    one mean and std (one channel). Shapes: x (n, 1, 8, 8) float32; y (n,) int64."""
    return _digits("digits-image", seed, True, locals())


def diabetes(
    seed: int,
    data_dir: str | None = None,
    *,
    test_fraction: float = 0.2,
    test_seed: int = 0,
    val_fraction: float = 0.1,
    n_val: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """scikit-learn's diabetes regression set (Efron et al. 2004): 442 patients, 10
    features (unscaled; standardized here on train), target = disease progression after
    one year. ``Dataset.y_scale`` converts an RMSE on standardized targets back to the
    original units. Shapes: x (n, 10) float32; y (n,) float32."""
    x, y = _sklearn_diabetes()  # (442, 10), (442,)
    pool, test = _carve_test("diabetes", None, len(y), test_fraction, test_seed)
    return from_arrays(
        "diabetes",
        "regression",
        x[pool],
        y[pool],
        x[test],
        y[test],
        seed=seed,
        n_val=resolve_n_val("diabetes", len(pool), val_fraction, n_val),
        standardize=check_bool("diabetes: standardize", standardize),
        meta={"source": "sklearn.datasets.load_diabetes", "test_seed": test_seed},
    )


# ---------------------------------------------------------------------------------------
# Teacher-student: a random one-hidden-layer network labels Gaussian inputs.

_PROBE = 4096  # inputs used to centre/normalize the teacher's outputs (teacher stream)


def _teacher_outputs(
    name: str, seed: int, opts: dict[str, Any], n_out: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Inputs x ~ N(0, I_d) and teacher outputs f(x) of shape (n, n_out)."""
    n_train = check_int(f"{name}: n_train", opts["n_train"], low=1)
    n_val = check_int(f"{name}: n_val", opts["n_val"], low=0)
    n_test = check_int(f"{name}: n_test", opts["n_test"], low=1)
    d = check_int(f"{name}: d", opts["d"], low=1)
    width = check_int(f"{name}: width", opts["width"], low=1)
    act = check_choice(f"{name}: activation", opts["activation"], ("relu", "tanh"))
    t_seed = seed if opts["teacher_seed"] is None else opts["teacher_seed"]
    t_seed = check_int(f"{name}: teacher_seed", t_seed, low=-(2**62))
    g = rng.numpy_rng(t_seed, "data", "teacher")
    w1 = g.standard_normal((d, width)) / np.sqrt(d)  # (d, m)
    b1 = g.standard_normal(width) * 0.5  # (m,)
    w2 = g.standard_normal((width, n_out)) / np.sqrt(width)  # (m, n_out)
    probe = g.standard_normal((_PROBE, d))  # (P, d)

    def f(x: np.ndarray) -> np.ndarray:
        z = x @ w1 + b1  # (n, m)
        h = np.maximum(z, 0.0) if act == "relu" else np.tanh(z)
        return h @ w2  # (n, n_out)

    fp = f(probe)
    mean, std = fp.mean(axis=0), fp.std(axis=0)
    std = np.where(std < 1e-12, 1.0, std)
    n = n_train + n_val + n_test
    x = rng.numpy_rng(seed, "data", "inputs").standard_normal((n, d))  # (n, d)
    return x, (f(x) - mean) / std, n_train + n_val  # outputs: zero mean, unit variance


def _teacher_dataset(
    name: str,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    n_pool: int,
    seed: int,
    opts: dict[str, Any],
    **extra: Any,
) -> Dataset:
    """The splits of a teacher dataset: rows ``[:n_pool]`` are the train + val pool (val
    carved by ``seed``), the rest the test set; ``opts`` are the builder's arguments and
    ``extra`` goes to :func:`from_arrays` (``n_classes``)."""
    teacher_seed = opts["teacher_seed"]
    return from_arrays(
        name,
        task,
        x[:n_pool],
        y[:n_pool],
        x[n_pool:],
        y[n_pool:],
        seed=seed,
        n_val=opts["n_val"],
        standardize=check_bool(f"{name}: standardize", opts["standardize"]),
        meta={"teacher_seed": seed if teacher_seed is None else teacher_seed},
        **extra,
    )


def teacher(
    seed: int,
    data_dir: str | None = None,
    *,
    n_train: int = 1000,
    n_val: int = 250,
    n_test: int = 2000,
    d: int = 20,
    width: int = 32,
    n_classes: int = 10,
    noise: float = 0.0,
    activation: str = "relu",
    teacher_seed: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """Teacher-student classification.

    ``x ~ N(0, I_d)``; a random teacher ``f(x) = W2 act(W1 x / sqrt(d) + b1) / sqrt(m)``
    (``m = width``, Gaussian weights drawn from ``teacher_seed``, default ``seed``) with
    each logit centred and scaled to unit variance on a probe sample; the label is
    ``argmax f(x)``, replaced by a uniformly random class with probability ``noise``.
    Train, val and test are i.i.d. draws by ``seed``.
    Shapes: x (n, d) float32; y (n,) int64 in [0, n_classes).
    """
    name = "teacher"
    k = check_int(f"{name}: n_classes", n_classes, low=2)
    p = check_float(f"{name}: noise", noise, low=0.0, high=1.0)
    x, out, n_pool = _teacher_outputs(name, seed, locals(), k)
    y = out.argmax(axis=1)  # (n,)
    g = rng.numpy_rng(seed, "data", "noise")
    flip = g.random(len(y)) < p
    y = np.where(flip, g.integers(0, k, len(y)), y)
    return _teacher_dataset(name, "classification", x, y, n_pool, seed, locals(), n_classes=k)


def teacher_regression(
    seed: int,
    data_dir: str | None = None,
    *,
    n_train: int = 1000,
    n_val: int = 250,
    n_test: int = 2000,
    d: int = 20,
    width: int = 32,
    noise: float = 0.1,
    activation: str = "relu",
    teacher_seed: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """Teacher-student regression: ``y = f(x) + noise * eps``, ``eps ~ N(0, 1)``, with the
    teacher ``f`` of :func:`teacher` (one output, unit variance on the probe sample), so
    ``noise**2`` is the noise-to-signal variance ratio and the Bayes RMSE is ``noise``
    (in original units; divide by ``Dataset.y_scale`` for standardized units).
    Shapes: x (n, d) float32; y (n,) float32.
    """
    name = "teacher-regression"
    sigma = check_float(f"{name}: noise", noise, low=0.0, high=float("inf"))
    x, out, n_pool = _teacher_outputs(name, seed, locals(), 1)
    y = out[:, 0] + sigma * rng.numpy_rng(seed, "data", "noise").standard_normal(len(out))
    return _teacher_dataset(name, "regression", x, y, n_pool, seed, locals())
