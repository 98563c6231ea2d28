"""A user's own model factory and dataset, as `--model` / `--data` load them (and broken
ones, for the error messages)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from droplab import data


def build(input_shape, n_outputs, *, input_rate, hidden_rate):
    (d,) = input_shape
    return nn.Sequential(
        nn.Dropout(input_rate),
        nn.Linear(d, 32),
        nn.ReLU(),
        nn.Dropout(hidden_rate),
        nn.Linear(32, n_outputs),
    )


def load(seed: int) -> data.Dataset:
    """Three Gaussian blobs in 6 dimensions: 240 pool points, 150 test points."""
    g = np.random.default_rng(12345)  # the data itself is fixed; `seed` picks the val split
    centers = g.normal(size=(3, 6)) * 1.5

    def sample(n):
        y = np.arange(n) % 3
        return (centers[y] + g.normal(size=(n, 6))).astype(np.float32), y

    x_pool, y_pool = sample(240)
    x_test, y_test = sample(150)
    return data.from_arrays(
        "blobs", "classification", x_pool, y_pool, x_test, y_test, seed=seed, n_val=40, n_classes=3
    )


def wrong_output(input_shape, n_outputs, *, input_rate, hidden_rate):
    return nn.Linear(input_shape[0], n_outputs + 1)


def not_a_module(input_shape, n_outputs, *, input_rate, hidden_rate):
    return "a model"


def no_keywords(input_shape, n_outputs):
    return nn.Linear(input_shape[0], n_outputs)


def load_dict(seed: int):
    return {"x": torch.zeros(3, 6)}


NOT_CALLABLE = 3
