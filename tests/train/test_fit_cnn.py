"""The stacked CNN path: grouped convolutions == members trained alone == module(k)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from droplab.models import ModelSpec
from droplab.train import MemberConfig, TrainConfig, evaluate, fit

CFG = TrainConfig(epochs=2, batch_size=32, lr=1e-2, select="last")
MEMBERS = [
    MemberConfig(seed=0, input_rate=0.1, hidden_rate=0.3),
    MemberConfig(seed=1, hidden_rate=0.5, lr=3e-3, max_norm=1.0),
    MemberConfig(seed=2, hidden_rate=0.2, weight_decay=1e-3),
]


def _image(tiny, shape):
    """The tiny dataset with inputs reshaped to images (12 = 1 x 3 x 4, non-square)."""
    return dataclasses.replace(
        tiny, x_train=tiny.x_train.view(-1, *shape), x_val=tiny.x_val.view(-1, *shape),
        x_test=tiny.x_test.view(-1, *shape), input_shape=shape,
    )  # fmt: skip


CASES = [
    (ModelSpec("cnn1d", widths=(4, 5, 3)), None),
    (ModelSpec("cnn1d", widths=(4, 3), dropout="spatial"), None),
    (ModelSpec("cnn2d", widths=(3, 4), kernel_sizes=(3, 3), stride=1), (1, 3, 4)),
    (
        ModelSpec(
            "cnn1d", widths=(4, 3), kernel_sizes=(3, 3), stride=1, dropout="dropblock", block_size=3
        ),
        None,
    ),
    (ModelSpec("cnn2d", widths=(3,), stride=1, dropout="dropblock", block_size=2), (1, 3, 4)),
]


@pytest.mark.parametrize(("spec", "shape"), CASES)
def test_cnn_batched_equals_alone_and_module(tiny, spec, shape):
    data = tiny if shape is None else _image(tiny, shape)
    batched = fit(spec, data, MEMBERS, CFG)
    assert batched.path == "fast"
    for k, m in enumerate(MEMBERS):
        alone = fit(spec, data, [m], CFG)
        for a, b in zip(batched.module(k).parameters(), alone.module(0).parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        got = evaluate(batched.module(k), data.x_test, data.y_test)
        assert got["nll"] == pytest.approx(batched.members[k].metrics["test_nll"], rel=1e-5)


def test_cnn_learns(tiny):
    res = fit(
        ModelSpec("cnn1d", widths=(8, 8), kernel_sizes=(3, 3)),
        tiny,
        [MemberConfig(seed=0, hidden_rate=0.1)],
        TrainConfig(epochs=15, lr=1e-2),
    )
    assert res.members[0].metrics["test_acc"] > 0.5  # chance is ~1/3


def test_fixed_count_cnn_takes_the_generic_path(tiny):
    spec = ModelSpec("cnn2d", widths=(3,), dropout="fixed-count", stride=1)
    res = fit(spec, _image(tiny, (1, 3, 4)), [MemberConfig(seed=0, hidden_rate=0.2)], CFG)
    assert res.path == "generic"


def test_cnn_with_a_gaussian_member(tiny):
    spec = ModelSpec("cnn1d", widths=(4, 3), kernel_sizes=(3, 3))
    members = [
        MemberConfig(seed=0, hidden_rate=0.3),
        MemberConfig(seed=1, hidden_rate=0.3, dropout="gaussian"),
    ]
    batched = fit(spec, tiny, members, CFG)
    assert batched.path == "fast"
    alone = fit(spec, tiny, members[1:], CFG)
    for a, b in zip(batched.module(1).parameters(), alone.module(0).parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(type(m).__name__ == "GaussianDropout" for m in batched.module(1))
