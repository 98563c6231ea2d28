"""Datasets for dropout experiments: train / val / test splits, standardized on train,
deterministic by seed.

    >>> from droplab import data
    >>> ds = data.load("mnist1d", seed=0)          # generated locally, cached
    >>> ds.x_train.shape, ds.n_outputs
    (torch.Size([3600, 40]), 10)

``load(name, seed=..., data_dir=..., **options)`` is a pure function of its arguments: the
same call gives the same tensors on any machine. See docs/data.md for each dataset.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from pathlib import Path

from droplab.data.builtin import (
    cache_dir,
    diabetes,
    digits,
    digits_image,
    mnist1d,
    teacher,
    teacher_regression,
)
from droplab.data.dataset import Dataset, from_arrays

__all__ = ["Dataset", "available", "cache_dir", "from_arrays", "load", "options"]

_REGISTRY: dict[str, Callable[..., Dataset]] = {
    "mnist1d": mnist1d,
    "digits": digits,
    "digits-image": digits_image,
    "teacher": teacher,
    "teacher-regression": teacher_regression,
    "diabetes": diabetes,
}


def _register_files() -> None:
    try:
        from droplab.data import files
    except ImportError:  # pragma: no cover - files.py lands in a later commit
        return
    _REGISTRY.update(
        {"mnist": files.mnist, "fashion-mnist": files.fashion_mnist, "cifar10": files.cifar10}
    )


_register_files()


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return list(_REGISTRY)


def _builder(name: str) -> Callable[..., Dataset]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset name {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def options(name: str) -> dict[str, object]:
    """The options ``load(name, ...)`` accepts, with their defaults."""
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def load(
    name: str, *, seed: int = 0, data_dir: str | Path | None = None, **options_: object
) -> Dataset:
    """Load dataset ``name`` with train / val / test splits.

    Args:
        name: one of :func:`available`.
        seed: seed of everything random in the dataset that is not pinned by an option
            (the validation split always; the whole sample for ``teacher``).
        data_dir: directory with downloaded files (``mnist``, ``fashion-mnist``,
            ``cifar10``); ignored by the built-in datasets.
        **options_: dataset-specific options; :func:`options` lists them.

    Returns:
        A :class:`Dataset`; x float32 ``(n, *input_shape)``, y int64 (classification) or
        float32 standardized targets (regression).

    Raises:
        ValueError: unknown ``name`` or a bad option value (the message lists the valid
            choices). TypeError: an unknown option or a value of the wrong type.
    """
    builder = _builder(name)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    seed = int(seed)
    valid = options(name)
    unknown = sorted(set(options_) - set(valid))
    if unknown:
        raise TypeError(
            f"load({name!r}): unknown option {unknown[0]}={options_[unknown[0]]!r}; "
            f"valid options: {', '.join(valid)}"
        )
    return builder(seed, None if data_dir is None else str(data_dir), **options_)
