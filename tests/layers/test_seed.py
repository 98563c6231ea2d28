"""seed= (Keras): a layer's own stream, saved in and restored from its state_dict."""

from __future__ import annotations

import io

import pytest
import torch

import droplab as dl

from .specs import seeded_conv2d

MAKERS = {
    "Dropout": lambda s: dl.Dropout(0.4, seed=s),
    "FixedCountDropout": lambda s: dl.FixedCountDropout(0.4, seed=s),
    "GaussianDropout": lambda s: dl.GaussianDropout(0.4, seed=s),
    "GaussianNoise": lambda s: dl.GaussianNoise(0.4, seed=s),
    "AlphaDropout": lambda s: dl.AlphaDropout(0.4, seed=s),
    "FeatureAlphaDropout": lambda s: dl.FeatureAlphaDropout(0.4, seed=s),
    "SpatialDropout": lambda s: dl.SpatialDropout(0.4, seed=s),
    "DropBlock": lambda s: dl.DropBlock(0.4, 2, seed=s),
    "DropPath": lambda s: dl.DropPath(0.4, seed=s),
    "DropConnect": lambda s: dl.DropConnect(seeded_conv2d(3, 2, 3), 0.4, seed=s),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_seeded_stream_survives_a_state_dict_round_trip(name):
    x = torch.randn(5, 3, 6, 7)
    a = MAKERS[name](3)
    a(x)  # advance the stream: the saved state is the current one, not the seed's
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    expected = [a(x) for _ in range(3)]
    buf.seek(0)
    b = MAKERS[name](12345)  # another seed, overwritten by the load
    b.load_state_dict(torch.load(buf))
    for want in expected:
        assert torch.equal(b(x), want)
    assert torch.equal(MAKERS[name](3)(x), MAKERS[name](3)(x))  # same seed, same noise


def test_seed_errors():
    with pytest.raises(ValueError, match=r"either generator .* or seed .*not both; got seed=1"):
        dl.Dropout(0.3, generator=torch.Generator(), seed=1)
    with pytest.raises(TypeError, match=r"seed must be an int or None, got float 1\.5"):
        dl.Dropout(0.3, seed=1.5)


def test_unseeded_layers_have_no_state():
    assert dl.Dropout(0.3).state_dict() == {}
    assert list(dl.Dropout(0.3, seed=0).state_dict()) == ["rng_state"]
