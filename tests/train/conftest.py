"""Tiny synthetic datasets (real `Dataset` objects) so trainer tests take milliseconds."""

from __future__ import annotations

import pytest
import torch

from droplab.data import Dataset


def make_tiny(
    task: str = "classification", n: int = 150, d: int = 12, classes: int = 3, seed: int = 0
) -> Dataset:
    """A linear-teacher problem: x ~ N(0, I_d); y = argmax(x A) (or x a + noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 60, d, generator=g)  # (n + 60, d)
    if task == "classification":
        y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
        n_classes = classes
    else:
        y = x @ torch.randn(d, generator=g) + 0.1 * torch.randn(n + 60, generator=g)
        n_classes = None
    return Dataset(
        name="tiny",
        task=task,
        x_train=x[:n],
        y_train=y[:n],
        x_val=x[n : n + 30],
        y_val=y[n : n + 30],
        x_test=x[n + 30 :],
        y_test=y[n + 30 :],
        n_classes=n_classes,
        input_shape=(d,),
    )


@pytest.fixture
def tiny() -> Dataset:
    return make_tiny()


@pytest.fixture
def tiny_regression() -> Dataset:
    return make_tiny("regression")
