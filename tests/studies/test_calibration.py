"""calibration: temperature scaling recovers a known temperature within its statistical
error, leaves the argmax alone, and rejects bad input; AUROC and entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from droplab.studies.calibration import auroc, entropy, fit_temperature, scaled, scores_ts


def _sample(n: int, temperature: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    z = 3.0 * torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.multinomial((z / temperature).softmax(-1), 1, generator=g).squeeze(-1)
    return z.softmax(-1), y, z


@pytest.mark.parametrize("t0", [0.5, 2.0])
def test_fit_temperature_recovers_the_true_one(t0):
    """Labels drawn from softmax(z / t0): the MLE of beta = 1/T is consistent with standard
    error 1 / sqrt(n I), I = mean_i Var_{c ~ p_i}(log p_ic) (the Fisher information of the
    one-parameter family); 5 standard errors of tolerance."""
    probs, y, z = _sample(20000, t0, seed=int(10 * t0))
    beta = 1.0 / fit_temperature(probs, y)
    p = (z / t0).softmax(-1)
    logp = z.log_softmax(-1)
    info = float(((p * logp**2).sum(-1) - (p * logp).sum(-1) ** 2).mean())
    se = 1.0 / math.sqrt(len(y) * info)
    assert abs(beta - 1.0 / t0) < 5 * se


def test_scaling_keeps_the_argmax_and_fits_on_validation_only():
    probs, y, _ = _sample(2000, 2.0, seed=1)
    s = scores_ts(probs[:1000], y[:1000], probs[1000:], y[1000:])
    assert s["temperature"] > 1.0  # labels were drawn at T = 2: the net is overconfident
    assert s["ts_nll"] < s["nll"]
    t = scaled(probs, 3.0)
    assert torch.equal(t.argmax(-1), probs.argmax(-1))
    torch.testing.assert_close(t.sum(-1), torch.ones(len(t), dtype=t.dtype))
    torch.testing.assert_close(scaled(probs, 1.0), probs)


def test_bad_input_names_the_argument():
    probs, y, _ = _sample(10, 1.0, seed=0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got 0"):
        scaled(probs, 0.0)
    with pytest.raises(ValueError, match=r"probs must be \(n, C\) and y \(n,\)"):
        fit_temperature(probs, y[:5])
    with pytest.raises(ValueError, match="auroc needs scores on both sides"):
        auroc(np.array([]), np.ones(3))


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    s_in = rng.integers(0, 5, 40).astype(float)
    s_out = rng.integers(1, 7, 25).astype(float)
    want = roc_auc_score(np.r_[np.zeros(40), np.ones(25)], np.r_[s_in, s_out])
    assert auroc(s_in, s_out) == pytest.approx(want)
    assert auroc(np.zeros(3), np.ones(2)) == 1.0 and auroc(np.ones(3), np.zeros(2)) == 0.0


def test_entropy():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(entropy(p), torch.tensor([0.0, float(np.log(2))]))
