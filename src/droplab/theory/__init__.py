"""droplab.theory: the exact math of dropout, each closed form checked against Monte Carlo.

- Linear regression with input dropout (exact): :func:`linear_expected_loss`,
  :func:`linear_expected_grad`, :func:`linear_dropout_solution`, :func:`equivalent_ridge`,
  :func:`linear_gradient_moments`.
- Gaussian vs Bernoulli (matched variance): :func:`gaussian_sigma`, :func:`bernoulli_keep`.
- Logistic regression: :func:`logistic_dropout_penalty` (Wager et al. 2013, 2nd order),
  :func:`logistic_expected_loss_mc` (unbiased MC), :func:`logistic_expected_loss_exact`.
- Deep networks: :class:`ExplicitDropoutPenalty` (Wei, Kakade & Ma 2020).
- Any torch module: :func:`gradient_decomposition` (MC bias and noise of the gradient).

The derivations are in docs/theory.md.
"""

from __future__ import annotations

from droplab.theory.explicit import ExplicitDropoutPenalty
from droplab.theory.gaussian import bernoulli_keep, gaussian_sigma
from droplab.theory.gradient import GradientDecomposition, gradient_decomposition
from droplab.theory.linear import (
    LinearGradientMoments,
    equivalent_ridge,
    linear_dropout_solution,
    linear_expected_grad,
    linear_expected_loss,
    linear_gradient_moments,
)
from droplab.theory.logistic import (
    logistic_dropout_penalty,
    logistic_expected_loss_exact,
    logistic_expected_loss_mc,
    logistic_loss,
)

__all__ = [
    "ExplicitDropoutPenalty",
    "GradientDecomposition",
    "LinearGradientMoments",
    "bernoulli_keep",
    "equivalent_ridge",
    "gaussian_sigma",
    "gradient_decomposition",
    "linear_dropout_solution",
    "linear_expected_grad",
    "linear_expected_loss",
    "linear_gradient_moments",
    "logistic_dropout_penalty",
    "logistic_expected_loss_exact",
    "logistic_expected_loss_mc",
    "logistic_loss",
]
