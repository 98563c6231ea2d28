"""Model factories: architecture, dropout slots, shapes (odd and non-square), max-norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import droplab as dl
from droplab.models import ModelSpec, build, max_norm_


def _drops(net):
    return [m for m in net if dl.layers.is_dropout(m)]


def test_mlp_layout_and_rates():
    net = build(ModelSpec("mlp", widths=(32, 16)), (40,), 10, input_rate=0.2, hidden_rate=0.5)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [d.rate for d in _drops(net)] == [0.2, 0.5, 0.5]
    assert net(torch.randn(7, 40)).shape == (7, 10)


@pytest.mark.parametrize(
    ("dropout", "cls"),
    [
        ("gaussian", dl.GaussianDropout),
        ("fixed-count", dl.FixedCountDropout),
        ("alpha", dl.AlphaDropout),
    ],
)
def test_mlp_variants(dropout, cls):
    net = build(ModelSpec("mlp", widths=(8,), dropout=dropout), (5,), 3, hidden_rate=0.3)
    assert all(isinstance(d, cls) for d in _drops(net))


def test_placement_classifier_and_none():
    spec = ModelSpec("mlp", widths=(8, 8, 8), placement="classifier")
    net = build(spec, (5,), 2, hidden_rate=0.5)
    layers = list(net)
    assert len(_drops(net)) == 2  # input slot + the last hidden slot
    assert layers.index(_drops(net)[1]) == len(layers) - 2
    assert not _drops(build(ModelSpec("mlp", placement="none"), (5,), 2))
    with pytest.raises(ValueError, match="placement='none'"):
        build(ModelSpec("mlp", placement="none"), (5,), 2, hidden_rate=0.5)


def test_cnn1d_is_the_mnist1d_paper_cnn():
    net = build(ModelSpec("cnn1d"), (40,), 10, hidden_rate=0.1)
    convs = [m for m in net if isinstance(m, nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (25, 5, 2, 1),
        (25, 3, 2, 1),
        (25, 3, 2, 1),
    ]
    # ConvBase of greydanus/mnist1d: 5,210 parameters, a 125 -> 10 linear head
    assert sum(p.numel() for p in net.parameters()) == 5210
    assert net(torch.randn(3, 40)).shape == (3, 10)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 32), (3, 32, 32)])
@pytest.mark.parametrize("dropout", ["bernoulli", "spatial", "dropblock"])
def test_cnn2d_shapes(shape, dropout):
    spec = ModelSpec("cnn2d", dropout=dropout, block_size=2)
    net = build(spec, shape, 10, input_rate=0.1, hidden_rate=0.2)
    net.train()
    assert net(torch.randn(2, *shape)).shape == (2, 10)
    assert isinstance(_drops(net)[0], dl.Dropout)  # the input slot stays elementwise


def test_cnn_conv_placement():
    net = build(ModelSpec("cnn1d", placement="conv", dropout="spatial"), (40,), 10, hidden_rate=0.2)
    assert [type(d).__name__ for d in _drops(net)] == [
        "Dropout",
        "SpatialDropout",
        "SpatialDropout",
    ]


def test_max_norm():
    net = build(ModelSpec("mlp", widths=(6,)), (4,), 3)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(100)
    out_before = net[-1].weight.clone()
    max_norm_(net, 2.0)
    assert net[1].weight.norm(dim=1).max() <= 2.0 + 1e-5
    torch.testing.assert_close(net[-1].weight, out_before)  # output layer untouched


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="kind"):
        ModelSpec("rnn")
    with pytest.raises(ValueError, match="dropout='spatial'"):
        ModelSpec("mlp", dropout="spatial")
    with pytest.raises(ValueError, match="hidden_rate"):
        build(ModelSpec(), (4,), 2, hidden_rate=1.0)
    with pytest.raises(ValueError, match="too small"):
        build(ModelSpec("cnn2d", kernel_sizes=(5, 5)), (1, 2, 2), 2)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build(ModelSpec("cnn2d"), (64,), 2)


def test_mlp_without_hidden_layers_is_linear():
    net = build(ModelSpec("mlp", widths=()), (7,), 3, input_rate=0.2)
    assert [type(m).__name__ for m in net] == ["Dropout", "Linear"]
    assert ModelSpec("mlp").resolved_widths() == (256, 256)
    with pytest.raises(ValueError, match="conv layer"):
        ModelSpec("cnn1d", widths=())
