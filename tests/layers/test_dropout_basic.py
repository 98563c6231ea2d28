"""First checks of droplab.functional.dropout and droplab.Dropout (full suite follows)."""

import pytest
import torch

import droplab as dl


def test_eval_is_identity_and_classic_scales():
    x = torch.randn(5, 7)
    assert torch.equal(dl.Dropout(0.3).eval()(x), x)
    assert torch.allclose(dl.Dropout(0.3, scaling="classic").eval()(x), 0.7 * x)


def test_values_in_zero_or_scaled():
    x = torch.randn(33, 17)
    y = dl.functional.dropout(x, 0.4, generator=torch.Generator().manual_seed(0))
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.6)


def test_both_rate_and_keep_rejected():
    with pytest.raises(ValueError, match="rate"):
        dl.Dropout(0.2, keep=0.8)
