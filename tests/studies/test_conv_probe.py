"""conv_probe against exact values: AR(1) feature maps, where the lag-1 autocorrelation is
phi and the best linear interpolation of a point from its neighbours has a closed form."""

from __future__ import annotations

import math

import pytest
import torch

from droplab.models import ModelSpec, build
from droplab.studies import conv_probe as CP

PHI = 0.8


def _ar1(n: int, C: int, L: int, phi: float = PHI, seed: int = 0) -> torch.Tensor:
    """(n, C, L) stationary AR(1) sequences, unit variance, channels independent."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, C, L, generator=g, dtype=torch.float64)
    x = torch.empty_like(e)
    x[..., 0] = e[..., 0]
    for t in range(1, L):
        x[..., t] = phi * x[..., t - 1] + math.sqrt(1 - phi**2) * e[..., t]
    return x


def test_lag1_is_phi():
    h = _ar1(400, 4, 50)
    # sd of a lag-1 correlation over N ~ 78000 pairs is about (1 - phi^2) / sqrt(N) ~ 0.0013;
    # the per-channel mean removal biases it by O(1 / (n L)); 5 sigma ~ 0.007
    assert CP.lag1(h) == pytest.approx(PHI, abs=0.01)
    assert math.isnan(CP.lag1(torch.zeros(5, 2, 1)))


def test_recovery_matches_the_interpolation_formula():
    """For AR(1), the R^2 of x_t from x_{t-k}, x_{t+k} (and everything beyond, which adds
    nothing: Markov) is 2 phi^(2k) / (1 + phi^(2k)); element-wise leaves k = 1, a 3-block
    k = 2, and a dropped channel leaves only independent channels: R^2 ~ 0."""
    h = _ar1(300, 4, 30, seed=1)
    r = CP.recovery(h)
    # ~2000 scored rows: the held-out R^2's sd is ~0.01-0.02; tolerance 0.05 (~3-5 sigma)
    assert r["element"] == pytest.approx(2 * PHI**2 / (1 + PHI**2), abs=0.05)
    assert r["block"] == pytest.approx(2 * PHI**4 / (1 + PHI**4), abs=0.05)
    assert r["spatial"] == pytest.approx(0.0, abs=0.05)
    assert r["element"] > r["block"] > r["spatial"]


def test_maps_too_small_for_the_window_give_nan():
    r = CP.recovery(torch.randn(20, 3, 2 * CP.WINDOW))
    assert all(math.isnan(v) for v in r.values())


def test_feature_maps_and_mechanism_of_a_built_cnn():
    torch.manual_seed(0)
    net = build(ModelSpec("cnn2d", widths=(3, 4), stride=1), input_shape=(1, 8, 8), n_outputs=10)
    maps = CP.feature_maps(net, torch.randn(30, 1, 8, 8))
    assert [tuple(m.shape) for m in maps] == [(30, 3, 8, 8), (30, 4, 8, 8)]
    assert all(bool((m >= 0).all()) for m in maps)  # after the ReLU
    out = CP.mechanism(net, torch.randn(30, 1, 8, 8))
    for key in ("ac1", "probe_element", "probe_block", "probe_spatial", "ac1_l1"):
        assert key in out
    with pytest.raises(ValueError, match=r"feature_maps needs a models\.build CNN"):
        CP.feature_maps(torch.nn.Linear(3, 2), torch.randn(2, 3))
