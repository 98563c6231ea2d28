"""Calibration and out-of-distribution scores shared by the ensemble and uncertainty studies.

Temperature scaling (Guo et al. 2017): one scalar T > 0 per method, fitted by minimizing
the validation NLL of ``softmax(log p / T)``, where ``p`` ``(n, C)`` are the method's
predicted probabilities (a single net's softmax, the mean of T_mc dropout masks' softmax,
or the mean of M nets' softmax). For a single net this is the usual logit scaling
(``log softmax(z) = z - logsumexp(z)``, and the constant cancels in the softmax); for
averaged predictions it scales the log of the average, as Ashukha et al. (2020) do for
ensembles ("calibrated log-likelihood"). T is chosen on validation only and then applied to
the test set, so a method is compared at its best single-temperature calibration.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.stats import rankdata

__all__ = ["auroc", "entropy", "fit_temperature", "scaled", "scores", "scores_ts"]

#: temperatures searched (log-uniform bracket); the optimum lies inside on every run seen
LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))


def _log(probs: torch.Tensor) -> torch.Tensor:
    return probs.clamp_min(1e-12).log()


def scaled(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(log p / T)``: probabilities ``(n, C)`` at temperature ``T``."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return (_log(probs) / temperature).softmax(-1)


def fit_temperature(probs: torch.Tensor, y: torch.Tensor) -> float:
    """The T in ``LOG_T_BOUNDS`` minimizing ``NLL(softmax(log p / T), y)``; probs ``(n, C)``
    on the validation split, labels ``(n,)``. Bounded Brent search over log T (the NLL is
    convex in 1/T, so the minimum is unique)."""
    if probs.dim() != 2 or y.dim() != 1 or probs.shape[0] != y.shape[0] or len(y) == 0:
        raise ValueError(
            f"probs must be (n, C) and y (n,) with n > 0, got {tuple(probs.shape)} and "
            f"{tuple(y.shape)}"
        )
    logp = _log(probs.detach().double().cpu())
    yy = y.detach().cpu()

    def nll(log_t: float) -> float:
        lp = (logp / math.exp(log_t)).log_softmax(-1)
        return float(-lp.gather(-1, yy.unsqueeze(-1)).mean())

    res = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(math.exp(res.x))


def scores(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``error, nll, ece`` (15 bins, Guo et al. 2017) of probabilities ``(n, C)``."""
    from droplab.train import metrics

    return {
        "error": 1.0 - float(metrics.accuracy(probs, y)),
        "nll": float(metrics.nll(probs, y)),
        "ece": float(metrics.ece(probs, y, bins=15)),
    }


def scores_ts(
    val: torch.Tensor, y_val: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor
) -> dict[str, float]:
    """Test ``error, nll, ece`` before temperature scaling, ``ts_nll, ts_ece`` after it
    (T fitted on the validation probabilities ``val``), and ``temperature``."""
    t = fit_temperature(val, y_val)
    after = scores(scaled(test, t), y_test)
    return {
        **scores(test, y_test),
        "ts_nll": after["nll"],
        "ts_ece": after["ece"],
        "temperature": t,
    }


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy ``-sum_c p_c log p_c`` in nats: ``(n, C) -> (n,)``."""
    p = probs.clamp_min(1e-12)
    return -(p * p.log()).sum(-1)


def auroc(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """Area under the ROC curve for telling OOD points (positives) from in-distribution
    ones by a higher score: ``P(s_out > s_in) + P(s_out = s_in) / 2``, the Mann-Whitney U
    over ``n_in n_out`` from the mid-ranks of the pooled scores; shapes ``(n_in,)``,
    ``(n_out,)``. 0.5 is chance."""
    s_in, s_out = np.asarray(score_in, float), np.asarray(score_out, float)
    if s_in.size == 0 or s_out.size == 0:
        raise ValueError(f"auroc needs scores on both sides, got {s_in.size} and {s_out.size}")
    ranks = rankdata(np.concatenate([s_in, s_out]))
    n_in, n_out = len(s_in), len(s_out)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2
    return float(u / (n_in * n_out))
