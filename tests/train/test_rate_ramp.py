"""TrainConfig.rate_ramp: the rates rise linearly over the first epochs (DropBlock's
schedule, Ghiasi et al. 2018) on the stacked path; rate_ramp=0 changes nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from droplab.models import ModelSpec
from droplab.train import MemberConfig, TrainConfig, fit

SPECS = [
    ModelSpec("mlp", widths=(8,)),
    ModelSpec("cnn1d", widths=(4, 3), kernel_sizes=(3, 3), stride=1, dropout="dropblock"),
    ModelSpec("cnn1d", widths=(4, 3), dropout="spatial"),
]


def _params(res, k=0):
    return [p.detach().clone() for p in res.module(k).parameters()]


@pytest.mark.parametrize("masks", ["kernel", "torch"])
@pytest.mark.parametrize("spec", SPECS)
def test_one_ramped_epoch_is_an_epoch_at_the_scaled_rate(tiny, spec, masks):
    """Epoch 1 of a ramp over R epochs trains at rate / R: the same weights as a fit at
    that rate (rate 0.4, R = 2: 0.2 exactly)."""
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-2, select="last", masks=masks)
    ramped = fit(spec, tiny, [MemberConfig(seed=3, hidden_rate=0.4)], replace(cfg, 2))
    plain = fit(spec, tiny, [MemberConfig(seed=3, hidden_rate=0.2)], cfg)
    for a, b in zip(_params(ramped), _params(plain)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def replace(cfg: TrainConfig, ramp: int) -> TrainConfig:
    return dataclasses.replace(cfg, rate_ramp=ramp)


def test_after_the_ramp_the_full_rate_trains(tiny):
    """A ramp changes training (epochs 1..R-1 at lower rates) and then the full rate is
    used: a member differs from one trained at full rate throughout, and from one trained
    without dropout."""
    spec = SPECS[1]
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, select="last")
    m = [MemberConfig(seed=0, hidden_rate=0.3)]
    ramped = _params(fit(spec, tiny, m, replace(cfg, 2)))
    full = _params(fit(spec, tiny, m, cfg))
    none = _params(fit(spec, tiny, [MemberConfig(seed=0)], cfg))
    assert any(not torch.equal(a, b) for a, b in zip(ramped, full))
    assert any(not torch.equal(a, b) for a, b in zip(ramped, none))


def test_batched_ramp_equals_members_alone_with_patience(tiny):
    """Members keep their schedules when others retire (patience), and batched == alone."""
    spec = SPECS[1]
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-2, select="val_loss", patience=1, rate_ramp=3)
    members = [
        MemberConfig(seed=0, hidden_rate=0.3, lr=5e-2),
        MemberConfig(seed=1, hidden_rate=0.1),
        MemberConfig(seed=2),
    ]
    batched = fit(spec, tiny, members, cfg)
    for k, m in enumerate(members):
        alone = fit(spec, tiny, [m], cfg)
        assert (
            batched.members[k].metrics["stopped_epoch"] == alone.members[0].metrics["stopped_epoch"]
        )
        for a, b in zip(_params(batched, k), _params(alone)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_rate_ramp_validation_and_generic_path(tiny):
    with pytest.raises(ValueError, match="rate_ramp must be >= 0, got -1"):
        TrainConfig(rate_ramp=-1)
    with pytest.raises(TypeError, match="rate_ramp must be an int"):
        TrainConfig(rate_ramp=1.5)
    spec = ModelSpec("mlp", widths=(8,), dropout="fixed-count")
    cfg = TrainConfig(epochs=1, rate_ramp=2)
    with pytest.raises(ValueError, match="rate_ramp=2 needs the stacked path"):
        fit(spec, tiny, [MemberConfig(seed=0, hidden_rate=0.2)], cfg)
