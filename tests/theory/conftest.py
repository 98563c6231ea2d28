"""Shared fixtures of the droplab.theory tests (helpers live in theory_mc.py)."""

from __future__ import annotations

import pytest
import torch

from droplab import rng


@pytest.fixture
def problem():
    """A fixed small, non-square regression problem with unequal column scales (n=9, d=4)."""
    g = rng.generator(0, "theory", "problem")
    X = torch.randn(9, 4, generator=g, dtype=torch.float64) * torch.tensor(
        [1.0, 2.0, 0.5, 1.5], dtype=torch.float64
    )
    w = torch.randn(4, generator=g, dtype=torch.float64)
    y = X @ torch.randn(4, generator=g, dtype=torch.float64) + 0.3 * torch.randn(
        9, generator=g, dtype=torch.float64
    )
    return X, y, w
