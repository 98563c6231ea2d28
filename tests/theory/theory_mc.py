"""Monte Carlo helpers of the droplab.theory tests: the 5-sigma check and MC means."""

from __future__ import annotations

import torch

Z = 5.0  # tolerance in standard errors: P(|N(0,1)| > 5) = 5.7e-7 per compared number


def within(estimate, stderr, truth, z: float = Z) -> None:
    """Assert |estimate - truth| <= z * stderr elementwise (stderr from the MC samples)."""
    est, se, tru = (torch.as_tensor(v, dtype=torch.float64) for v in (estimate, stderr, truth))
    dev = (est - tru).abs()
    assert bool((se > 0).all()), f"standard error must be positive, got {se}"
    assert bool((dev <= z * se).all()), (
        f"MC estimate {est} vs closed form {tru}: |diff| {dev} > {z} * stderr {se}"
    )


def mc(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over dim 0 and its standard error sd / sqrt(S)."""
    v = values.double()
    return v.mean(0), v.std(0) / v.shape[0] ** 0.5
