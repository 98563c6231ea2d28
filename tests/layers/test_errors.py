"""Bad arguments and bad inputs fail loudly, naming the argument, the value and the range."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn

import droplab as dl
from droplab import functional as F
from droplab._validate import check_rate

BAD_RATES = [
    (math.nan, ValueError, r"rate must be in \[0, 1\], got nan"),
    (-0.1, ValueError, r"rate must be in \[0, 1\], got -0.1"),
    (1.5, ValueError, r"rate must be in \[0, 1\], got 1.5"),
    ("0.5", TypeError, r"rate must be a real number in \[0, 1\], got str '0.5'"),
    (True, TypeError, r"rate must be a real number in \[0, 1\], got bool True"),
    (None, ValueError, r"give rate .* or keep"),
]


@pytest.mark.parametrize(("value", "error", "message"), BAD_RATES)
def test_check_rate_messages(value, error, message):
    with pytest.raises(error, match=message):
        check_rate(value, None)


def test_check_rate_resolves_keep_and_rejects_both():
    assert check_rate(0.25, None) == (0.25, 0.75)
    assert check_rate(None, 0.25) == (0.75, 0.25)
    with pytest.raises(ValueError, match=r"not both; got rate=0.2 and keep=0.8"):
        check_rate(0.2, 0.8)
    with pytest.raises(ValueError, match=r"keep must be in \[0, 1\], got 2"):
        check_rate(None, 2)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\), got 1.0"):
        check_rate(1.0, None, allow_one=False)


CONSTRUCTORS = {
    "Dropout": lambda **kw: dl.Dropout(**kw),
    "FixedCountDropout": lambda **kw: dl.FixedCountDropout(**kw),
    "GaussianDropout": lambda **kw: dl.GaussianDropout(**kw),
    "AlphaDropout": lambda **kw: dl.AlphaDropout(**kw),
    "SpatialDropout": lambda **kw: dl.SpatialDropout(**kw),
    "DropBlock": lambda **kw: dl.DropBlock(kw.pop("rate", None), 3, **kw),
    "DropPath": lambda **kw: dl.DropPath(**kw),
    "DropConnect": lambda **kw: dl.DropConnect(nn.Linear(3, 2), **kw),
}


@pytest.mark.parametrize("name", CONSTRUCTORS)
@pytest.mark.parametrize(("value", "error", "message"), BAD_RATES[:5])
def test_every_layer_rejects_bad_rate_at_construction(name, value, error, message):
    with pytest.raises(error, match=message.split(",")[0]):
        CONSTRUCTORS[name](rate=value)
    with pytest.raises(error, match="keep"):
        CONSTRUCTORS[name](keep=value)


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_every_layer_rejects_rate_and_keep_together(name):
    with pytest.raises(ValueError, match="not both"):
        CONSTRUCTORS[name](rate=0.2, keep=0.8)
    layer = CONSTRUCTORS[name](keep=0.75)  # keep alone is fine
    assert layer.rate == pytest.approx(0.25) and layer.keep == pytest.approx(0.75)


def test_gaussian_arguments():
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\), got 1"):
        dl.GaussianDropout(1.0)  # infinite variance
    with pytest.raises(ValueError, match="not several"):
        dl.GaussianDropout(0.3, sigma=0.5)
    with pytest.raises(ValueError, match="got none of them"):
        dl.GaussianDropout()
    with pytest.raises(ValueError, match=r"sigma must be a finite real number >= 0, got -1"):
        dl.GaussianDropout(sigma=-1)
    for bad in (-0.5, math.inf, math.nan):
        with pytest.raises(ValueError, match="std must be a finite real number >= 0"):
            dl.GaussianNoise(bad)
    with pytest.raises(TypeError, match="std"):
        dl.GaussianNoise("1")


def test_option_checks_list_the_choices():
    with pytest.raises(ValueError, match=r"scaling must be one of 'inverted', 'classic'; got 'x'"):
        dl.Dropout(0.1, scaling="x")
    with pytest.raises(ValueError, match=r"backend must be one of 'auto', 'fast', 'torch'"):
        F.dropout(torch.ones(2), 0.1, backend="cuda")
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        dl.Dropout(0.1, generator=0)
    with pytest.raises(TypeError, match="scale_by_keep must be a bool"):
        dl.DropPath(0.1, scale_by_keep=1)


@pytest.mark.skipif(
    importlib.util.find_spec("droplab.kernels") is not None, reason="kernels are present"
)
def test_fast_backend_without_kernels_is_a_clear_error():
    with pytest.raises(ImportError, match=r"backend='fast' needs droplab\.kernels"):
        F.dropout(torch.ones(3), 0.5, backend="fast")


def test_broadcast_dims_checked_against_the_input():
    x = torch.ones(2, 3, 4)
    with pytest.raises(ValueError, match=r"broadcast_dims entry 3 is out of range .* rank 3"):
        F.dropout(x, 0.5, broadcast_dims=3)
    with pytest.raises(ValueError, match="must not repeat"):
        F.dropout(x, 0.5, broadcast_dims=(1, -2))
    with pytest.raises(TypeError, match="broadcast_dims"):
        dl.Dropout(0.5, broadcast_dims="1")


@pytest.mark.parametrize("bad", [0, -2, 2.5, "3", True, (3, 0)])
def test_block_size_must_be_positive_int(bad):
    with pytest.raises((ValueError, TypeError), match="block_size"):
        dl.DropBlock(0.1, bad)


def test_block_size_larger_than_input():
    with pytest.raises(ValueError, match=r"block_size \(8, 8\) is larger .* \(7, 9\)"):
        dl.DropBlock(0.1, 8)(torch.ones(2, 3, 7, 9))
    with pytest.raises(ValueError, match="block_size"):
        F.drop_block(torch.ones(2, 3, 5), 0.1, 6)
    with pytest.raises(ValueError, match="tuple of 2 ints"):
        F.drop_block(torch.ones(2, 3, 5, 5), 0.1, (2, 2, 2))


@pytest.mark.parametrize("shape", [(5,), (4, 5)])
def test_spatial_dropout_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\).*rank"):
        dl.SpatialDropout(0.2)(torch.ones(shape))


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 5, 6, 7)])
def test_drop_block_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"\(N, C, L\), \(N, C, H, W\) or \(N, C, D, H, W\).*rank"):
        dl.DropBlock(0.2, 1)(torch.ones(shape))


def test_wrong_rank_is_an_error_even_in_eval():
    with pytest.raises(ValueError, match="rank"):
        dl.SpatialDropout(0.2).eval()(torch.ones(4, 5))


FUNCTIONS = [
    lambda x: F.dropout(x, 0.5),
    lambda x: F.fixed_count_dropout(x, 0.5),
    lambda x: F.gaussian_dropout(x, 0.5),
    lambda x: F.gaussian_noise(x, 0.5),
    lambda x: F.alpha_dropout(x, 0.5),
    lambda x: F.spatial_dropout(x, 0.5),
    lambda x: F.drop_block(x, 0.5, 1),
    lambda x: F.drop_path(x, 0.5),
    lambda x: F.drop_connect_weight(x, 0.5),
]


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_tensors_rejected(fn, dtype):
    with pytest.raises(TypeError, match=f"floating-point tensor .* got dtype {dtype}"):
        fn(torch.ones(2, 3, 4, dtype=dtype))


def test_non_tensor_input_rejected():
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor, got list"):
        F.dropout([1.0, 2.0], 0.5)


def test_dropconnect_needs_linear_or_conv():
    with pytest.raises(TypeError, match=r"DropConnect wraps an nn\.Linear.*got ReLU"):
        dl.DropConnect(nn.ReLU(), 0.5)


def test_mc_helpers_arguments():
    net = nn.Sequential(nn.Linear(2, 2), dl.Dropout(0.5))
    with pytest.raises(ValueError, match="samples must be an int >= 1, got 0"):
        dl.mc_predict(net, torch.ones(1, 2), samples=0)
    with pytest.raises(ValueError, match="no dropout module"):
        dl.mc_predict(nn.Linear(2, 2), torch.ones(1, 2))
    with pytest.raises(TypeError, match=r"factory must return an nn\.Module"):
        dl.replace_dropout(nn.Sequential(nn.Dropout(0.1)), lambda rate: rate)
