"""MC-dropout helpers: mc_mode, mc_predict, replace_dropout, is_dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import droplab as dl

from .specs import LAYERS, gen


def _net():
    return nn.Sequential(
        nn.Linear(5, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        dl.Dropout(0.5, generator=gen(1)),
        nn.Linear(8, 8),
        nn.Dropout(0.3),
        dl.DropConnect(nn.Linear(8, 3), 0.2, generator=gen(2)),
    )


def test_mc_mode_turns_on_only_dropout_and_restores():
    net = _net().train()
    net[4].eval()  # a mixed state must come back exactly
    before = [m.training for m in net.modules()]
    with dl.mc_mode(net):
        assert net[3].training and net[5].training and net[6].training
        assert not net[1].training  # batch norm stays in eval: running stats untouched
        assert not net[0].training and not net[6].module.training
        stats = net[1].running_mean.clone()
        net(torch.randn(4, 5))
        assert torch.equal(net[1].running_mean, stats)
    assert [m.training for m in net.modules()] == before


def test_mc_mode_restores_after_an_exception():
    net = _net().eval()
    with pytest.raises(RuntimeError), dl.mc_mode(net):
        raise RuntimeError("boom")
    assert not any(m.training for m in net.modules())


def test_mc_predict_shape_spread_and_mean():
    net = _net().eval()
    x = torch.randn(6, 5, generator=gen(3))
    out = dl.mc_predict(net, x, samples=40)
    assert out.shape == (40, 6, 3)
    assert out.std(dim=0).min() > 0  # the samples differ
    assert not out.requires_grad
    assert not any(m.training for m in net.modules())  # back in eval afterwards
    deterministic = net(x)
    assert not torch.equal(out[0], deterministic)


def test_mc_predict_is_reproducible_with_layer_generators():
    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 7), dl.Dropout(0.5, generator=gen(5)), nn.Linear(7, 2))

    x = torch.randn(3, 4)
    assert torch.equal(dl.mc_predict(make(), x, samples=5), dl.mc_predict(make(), x, samples=5))


def test_is_dropout():
    for spec in LAYERS:
        assert dl.is_dropout(spec.make(None)), spec.name
    for m in [nn.Dropout(), nn.Dropout2d(), nn.AlphaDropout(), nn.FeatureAlphaDropout()]:
        assert dl.is_dropout(m)
    for m in [nn.Linear(2, 2), nn.BatchNorm1d(3), nn.ReLU(), nn.Sequential()]:
        assert not dl.is_dropout(m)


def test_replace_dropout_swaps_every_nn_dropout_only():
    net = nn.Sequential(
        nn.Linear(3, 3),
        nn.Dropout(0.1),
        nn.Sequential(nn.Dropout(0.2), nn.Dropout2d(0.3)),
        dl.Dropout(0.4),
    ).eval()
    out = dl.replace_dropout(net, lambda rate: dl.GaussianDropout(rate))
    assert out is net
    assert isinstance(net[1], dl.GaussianDropout) and net[1].rate == pytest.approx(0.1)
    assert isinstance(net[2][0], dl.GaussianDropout) and net[2][0].rate == pytest.approx(0.2)
    assert isinstance(net[2][1], nn.Dropout2d)  # channel dropout is not element-wise dropout
    assert isinstance(net[3], dl.Dropout)
    assert not net[1].training  # keeps the replaced layer's mode
    assert not any(type(m) is nn.Dropout for m in net.modules())
    bare = dl.replace_dropout(nn.Dropout(0.25), lambda rate: dl.Dropout(rate))
    assert isinstance(bare, dl.Dropout) and bare.rate == 0.25


def test_droplab_dropout_matches_torch_in_distribution_and_eval():
    # torch's nn.Dropout is the oracle: same values {0, x / keep}, same eval identity
    x = torch.randn(50, 60)
    ours, theirs = dl.Dropout(0.3), nn.Dropout(0.3)
    for y in (ours(x), theirs(x)):
        ratio = y / x
        zero = ratio == 0
        assert 0 < zero.sum() < x.numel()
        torch.testing.assert_close(ratio[~zero], torch.full_like(ratio[~zero], 1 / 0.7))
    assert torch.equal(ours.eval()(x), theirs.eval()(x))


def test_mc_with_every_rate_zero_raises_like_no_dropout():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.0), dl.Dropout(0.0), dl.GaussianNoise(0.0))
    with pytest.raises(ValueError, match=r"3 dropout module\(s\) in Sequential, all with rate 0"):
        dl.mc_predict(net, torch.ones(2, 3))
    with pytest.raises(ValueError, match="all with rate 0"), dl.mc_mode(net):
        pass
    net[1].p = 0.1  # one active module is enough
    assert dl.mc_predict(net, torch.ones(2, 3), samples=2).shape == (2, 2, 3)


def test_mc_last_layer_samples_only_the_last_active_dropout():
    net = nn.Sequential(
        dl.Dropout(0.5), nn.Linear(4, 4), dl.Dropout(0.5), nn.Linear(4, 2), dl.Dropout(0.0)
    )
    with dl.mc_mode(net, last_layer=True):
        assert [m.training for m in net] == [False, False, True, False, False]
    torch.manual_seed(0)
    out = dl.mc_predict(net, torch.randn(3, 4), samples=50, last_layer=True)
    assert out.std(dim=0).min() > 0


def test_mc_predict_vectorized_matches_the_loop_in_distribution():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 64), nn.ReLU(), dl.Dropout(0.5), nn.Linear(64, 1))
    x = torch.randn(3, 5)
    loop = dl.mc_predict(net, x, samples=4000)
    vec = dl.mc_predict(net, x, samples=4000, vectorize=True)
    chunked = dl.mc_predict(net, x, samples=7, vectorize=3)
    assert vec.shape == loop.shape == (4000, 3, 1) and chunked.shape == (7, 3, 1)
    # 5 sigma of the difference of two means of 4000 independent samples
    se = (loop.var(dim=0) / 4000 + vec.var(dim=0) / 4000).sqrt()
    assert ((loop.mean(dim=0) - vec.mean(dim=0)).abs() <= 5 * se).all()
    assert vec.std(dim=0).min() > 0
    with pytest.raises(ValueError, match="DropConnect shares one draw across the batch"):
        dl.mc_predict(_net(), torch.randn(2, 5), samples=3, vectorize=True)


def test_replace_dropout_default_mapping_copy_undo_and_warning():
    net = nn.Sequential(
        nn.Dropout(0.1, inplace=True),
        nn.Dropout1d(0.2),
        nn.Dropout2d(0.3),
        nn.Dropout3d(0.4),
        nn.AlphaDropout(0.5),
        nn.FeatureAlphaDropout(0.6),
    ).eval()
    originals = list(net)
    copy = dl.replace_dropout(net, inplace=False)
    assert list(net) == originals  # the model itself is untouched
    expected = [
        (dl.Dropout, None),
        (dl.SpatialDropout, 1),
        (dl.SpatialDropout, None),
        (dl.SpatialDropout, 3),
        (dl.AlphaDropout, None),
        (dl.FeatureAlphaDropout, None),
    ]
    for new, old, (cls, k) in zip(copy, originals, expected):
        assert type(new) is cls and new.rate == old.p and not new.training
        assert getattr(new, "spatial_dims", None) == k
    assert copy[0].inplace
    same = dl.replace_dropout(net)
    assert same is net and isinstance(net[2], dl.SpatialDropout)
    assert dl.restore_dropout(net) is net and list(net) == originals
    with pytest.raises(ValueError, match="nothing to restore"):
        dl.restore_dropout(net)
    with pytest.warns(UserWarning, match="found no torch dropout layer to replace in Linear"):
        dl.replace_dropout(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="factory must be a callable"):
        dl.replace_dropout(net, 0.5)


def test_replaced_model_computes_what_torch_computes_in_eval_and_in_distribution():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Dropout2d(0.3), nn.Flatten(), nn.Dropout(0.2))
    ours = dl.replace_dropout(net, inplace=False)
    x = torch.randn(2, 2, 6, 5)
    assert torch.equal(net.eval()(x), ours.eval()(x))
    assert dl.mc_predict(ours, x, samples=3).shape == (3, 2, 4 * 4 * 3)


def test_consistent_dropout_same_masks_for_every_batch_and_call():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), dl.ConsistentDropout(0.5, seed=3))
    x = torch.randn(6, 4)
    a = dl.mc_predict(net, x, samples=5)
    b = dl.mc_predict(net, x[2:5], samples=5)  # another batch: pass k, mask k
    assert torch.equal(a[:, 2:5] == 0, b == 0)  # the same masks
    torch.testing.assert_close(a[:, 2:5], b)  # (the GEMM may round differently by batch)
    assert not torch.equal(a[0], a[1])  # the passes differ from each other
    zero = a[0] == 0  # one mask per pass, shared by the examples (where h > 0)
    h = net[:2](x)
    assert torch.equal(zero | (h == 0), zero[:1].expand_as(zero) | (h == 0))
    net[2].reset()
    assert not torch.equal(dl.mc_predict(net, x, samples=5), a)  # a new set of masks
    with pytest.raises(ValueError, match="ConsistentDropout shares one draw"):
        dl.mc_predict(net, x, samples=2, vectorize=True)


def test_consistent_dropout_trains_like_dropout():
    layer = dl.ConsistentDropout(0.3, generator=gen(1)).train()
    x = torch.ones(400, 500)
    y = layer(x)
    n = x.numel()
    frac = (y == 0).double().mean().item()
    assert abs(frac - 0.3) <= 5 * (0.3 * 0.7 / n) ** 0.5  # 5 sigma of Binomial(n, rate)
    assert not torch.equal(y[0] == 0, y[1] == 0)  # fresh masks per example in training
    assert torch.equal(layer.eval()(x), x)
