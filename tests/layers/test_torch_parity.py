"""droplab's layers as drop-in replacements for torch.nn's: torch's argument names (``p``,
``inplace``), torch's input shapes, torch's layers as the oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import droplab as dl

from .specs import gen

P_LAYERS = [dl.Dropout, dl.SpatialDropout, dl.AlphaDropout, dl.FeatureAlphaDropout]
TORCH_OF = {
    dl.Dropout: nn.Dropout,
    dl.SpatialDropout: nn.Dropout2d,
    dl.AlphaDropout: nn.AlphaDropout,
    dl.FeatureAlphaDropout: nn.FeatureAlphaDropout,
}


@pytest.mark.parametrize("cls", [*P_LAYERS, dl.DropPath])
def test_p_means_rate(cls):
    layer = cls(p=0.3)
    assert layer.rate == 0.3 and layer.keep == pytest.approx(0.7) and layer.p == 0.3
    assert cls(0.3, p=0.3).rate == 0.3  # equal values are fine
    with pytest.raises(ValueError, match=r"p is torch's name for rate.*rate=0.2 and p=0.3"):
        cls(0.2, p=0.3)
    with pytest.raises(ValueError, match=r"either p .* or keep.*p=0.3 and keep=0.5"):
        cls(p=0.3, keep=0.5)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        cls(p=1.5)
    layer.p = 0.6  # setting torch's name sets both conventions
    assert layer.rate == 0.6 and layer.keep == pytest.approx(0.4)


@pytest.mark.parametrize("cls", P_LAYERS)
def test_torch_positional_signature_and_inplace(cls):
    theirs = TORCH_OF[cls](0.4, True)  # torch: (p, inplace)
    ours = cls(0.4, True, generator=gen(0))
    assert ours.rate == theirs.p and ours.inplace is theirs.inplace is True
    assert "inplace=True" in repr(ours)
    x = torch.randn(4, 3, 5, 6, generator=gen(1))
    x_copy = x.clone()
    y = ours(x)
    assert y is x  # written into the input, as torch does
    ref = cls(0.4, generator=gen(0))(x_copy)
    assert torch.equal(y, ref)  # the same values as out of place
    ours.eval()
    assert ours(x) is x
    with pytest.raises(TypeError, match=r"inplace must be a bool \(True or False\), got int 1"):
        cls(0.4, 1)


def test_inplace_gradient_flows_like_torch():
    # torch's inplace dropout on a non-leaf: the gradient is the forward's mask / keep
    w = torch.rand(50, 60, generator=gen(2)).add(0.5).requires_grad_()
    h = w * 1.0  # non-leaf, as after an activation
    y = dl.Dropout(0.3, True, generator=gen(3))(h)
    y.sum().backward()
    torch.testing.assert_close(w.grad, (y.detach() != 0).float() / 0.7)


@pytest.mark.parametrize(
    ("theirs", "ours", "shape"),
    [
        (nn.Dropout1d(0.5), dl.SpatialDropout(0.5, spatial_dims=1), (5, 7)),
        (nn.Dropout1d(0.5), dl.SpatialDropout(0.5, spatial_dims=1), (3, 5, 7)),
        (nn.Dropout2d(0.5), dl.SpatialDropout(0.5), (3, 5, 7, 4)),
        (nn.Dropout3d(0.5), dl.SpatialDropout(0.5, spatial_dims=3), (5, 2, 3, 4)),
        (nn.Dropout3d(0.5), dl.SpatialDropout(0.5, spatial_dims=3), (3, 5, 2, 3, 4)),
        (nn.FeatureAlphaDropout(0.5), dl.FeatureAlphaDropout(0.5), (3, 5, 7, 4)),
    ],
    ids=["1d-unbatched", "1d", "2d", "3d-unbatched", "3d", "feature-alpha"],
)
def test_channel_layers_read_torch_shapes_the_same_way(theirs, ours, shape):
    # which units share a mask value: one per channel, the channel dim being the first
    # (unbatched) or second (batched) dim, exactly as torch's layer has it
    x = torch.ones(shape)
    k = {"SpatialDropout": ours.spatial_dims, "FeatureAlphaDropout": None}[type(ours).__name__]
    first_spatial = 2 if k is None or len(shape) == k + 2 else 1
    for y in (theirs(x), ours(x)):
        flat = y.flatten(first_spatial)  # (*channels, spatial units)
        assert torch.equal(flat, flat[..., :1].expand_as(flat))


def test_spatial_dims_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"spatial_dims=2 expects input of shape \(N, C, \*2 dims"):
        dl.SpatialDropout(0.5, spatial_dims=2)(torch.ones(2, 3))
    with pytest.raises(ValueError, match="pass spatial_dims"):
        dl.SpatialDropout(0.5)(torch.ones(2, 3))
    with pytest.raises(ValueError, match="spatial_dims must be an int >= 1, got 0"):
        dl.FeatureAlphaDropout(0.5, spatial_dims=0)


def test_drop_path_default_rate_and_modes():
    assert dl.DropPath().rate == 0.0  # timm's DropPath(): off until a schedule sets it
    x = torch.ones(4, 3)
    assert dl.DropPath()(x) is x
    assert repr(dl.DropPath(0.1, mode="batch")) == "DropPath(rate=0.1, keep=0.9, mode='batch')"
    with pytest.raises(ValueError, match=r"mode must be one of 'row', 'batch'; got 'rows'"):
        dl.DropPath(0.1, mode="rows")


def test_drop_path_schedule_is_timms_linear_rule():
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(2, 2), dl.DropPath()) for _ in range(12))
    rates = dl.drop_path_schedule(blocks, 0.1)
    timm_rule = [x.item() for x in torch.linspace(0, 0.1, 12)]  # timm's VisionTransformer
    assert rates == pytest.approx(timm_rule, abs=1e-7)
    assert [b[1].rate for b in blocks] == rates
    assert dl.drop_path_schedule(nn.Sequential(dl.DropPath()), 0.2) == [0.2]
    with pytest.raises(ValueError, match="found no DropPath module in Linear"):
        dl.drop_path_schedule(nn.Linear(2, 2), 0.1)
