"""Rate schedules over training (DropoutSchedule, set_dropout_rate) and R-Drop's loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import droplab as dl

from .specs import gen


def _net():
    return nn.Sequential(
        nn.Dropout(0.5),
        dl.Dropout(0.1),
        dl.GaussianDropout(0.2),
        dl.GaussianNoise(0.3),
        dl.DropBlock(0.1, 2),
        dl.DropConnect(nn.Linear(3, 3), 0.1),
        dl.DropPath(0.1),
    )


def test_set_dropout_rate_sets_every_rate_and_what_depends_on_it():
    net = _net()
    assert dl.set_dropout_rate(net, 0.25) == 6  # all but GaussianNoise
    assert net[0].p == 0.25 and net[1].keep == 0.75 and net[4].keep == 0.75
    assert net[2].sigma == pytest.approx(math.sqrt(0.25 / 0.75))  # Gaussian: sigma follows
    assert net[3].std == 0.3
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\], got 1.5"):
        dl.set_dropout_rate(net, 1.5)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("constant", [0.2, 0.2, 0.2, 0.2]),
        ("linear", [0.0, 0.1, 0.12, 0.2]),
        ("early", [0.2, 0.2, 0.0, 0.0]),
        ("late", [0.0, 0.0, 0.2, 0.2]),
    ],
)
def test_schedules(kind, expected):
    net = _net()
    sched = dl.DropoutSchedule(net, 0.2, kind=kind, total_steps=100, switch=60)
    got = [sched.step(t) for t in (0, 50, 60, 200)]
    assert got == pytest.approx(expected)
    assert net[1].rate == pytest.approx(expected[-1])
    assert "kind=" in repr(sched)


def test_schedule_errors():
    with pytest.raises(ValueError, match="kind must be one of 'constant', 'linear'"):
        dl.DropoutSchedule(_net(), 0.2, kind="cosine", total_steps=10)
    with pytest.raises(ValueError, match="found no dropout module in Linear"):
        dl.DropoutSchedule(nn.Linear(2, 2), 0.2, total_steps=10)
    with pytest.raises(ValueError, match="step must be an int >= 0, got -1"):
        dl.DropoutSchedule(_net(), 0.2, total_steps=10).step(-1)


def test_r_drop_loss_is_the_symmetric_kl():
    a = torch.randn(6, 5, generator=gen(1), dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 5, generator=gen(2), dtype=torch.float64)
    la, lb = a.log_softmax(-1), b.log_softmax(-1)
    kl = torch.nn.functional.kl_div  # kl_div(input=log q, target=log p) = KL(p || q)
    ref = 0.5 * (
        kl(lb, la, log_target=True, reduction="batchmean")
        + kl(la, lb, log_target=True, reduction="batchmean")
    )
    loss = dl.r_drop_loss(a, b)
    torch.testing.assert_close(loss, ref)
    assert dl.r_drop_loss(a, b, reduction="none").shape == (6,)
    torch.testing.assert_close(dl.r_drop_loss(a, b, reduction="sum"), 6 * ref)
    assert dl.r_drop_loss(a, a.detach()).item() == pytest.approx(0.0, abs=1e-15)
    loss.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    with pytest.raises(ValueError, match=r"same shape.*\(6, 5\) and \(6, 4\)"):
        dl.r_drop_loss(a, b[:, :4])
