"""Batched dropout for the fast path: K members, each with its own masks stream.

Everything random in a batched step goes through :func:`batched_dropout`. Two mask
sources, chosen by ``backend``:

- ``"kernel"`` (default when :mod:`droplab.kernels` imports): counter-based masks,
  ``kernels.bernoulli/gaussian(x, ..., member_seeds=derive(seed, stream), offset=counter
  * n_slots + slot)``; nothing is stored for backward, the mask is regenerated.
- ``"torch"``: per-member ``torch.Generator`` streams, 16 random bits per unit.

Reproducibility contract: member k's masks depend only on its own seed and on the shapes
(batch size, widths), never on the other members, so member k trained alone (K=1) sees
exactly the masks it sees in a batch. Members whose rate is 0 for a slot draw nothing.
"""

from __future__ import annotations

import math

import torch

from droplab import rng

try:
    from droplab import kernels as _kernels
except ImportError:  # pragma: no cover - kernels are part of droplab; kept for safety
    _kernels = None

__all__ = ["MemberNoise", "batched_dropout"]

_TWO16 = 1 << 16


class MemberNoise:
    """Per-member mask streams and per-slot rates of a batched model.

    Args:
        seeds: member seeds (K,).
        rates: per slot, the K members' P(drop), e.g. ``[input_rates, hidden_rates, ...]``.
        gaussian: per member, True for multiplicative Gaussian noise
            ``N(1, rate / (1 - rate))`` instead of Bernoulli.
        scaling: ``"inverted"`` (kept units scaled by 1/keep in training) or ``"classic"``.
        stream: the rng stream name (``"masks"`` for training, ``"mc"`` for MC evaluation).
        backend: ``"auto"`` (kernel when available), ``"kernel"`` or ``"torch"``.

    Call :meth:`advance` once per forward pass (training step, MC sample) so every pass
    draws fresh masks on the kernel backend.
    """

    def __init__(
        self,
        seeds: list[int],
        rates: list[list[float]],
        gaussian: list[bool],
        *,
        scaling: str,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        stream: str = "masks",
        backend: str = "auto",
    ) -> None:
        if backend not in ("auto", "kernel", "torch"):
            raise ValueError(f"backend must be 'auto', 'kernel' or 'torch', got {backend!r}")
        if backend == "kernel" and _kernels is None:  # pragma: no cover
            raise ValueError("backend='kernel' needs droplab.kernels")
        self.backend = "torch" if backend == "torch" or _kernels is None else "kernel"
        self.counter = 0
        self.K = len(seeds)
        self.device = torch.device(device)
        self.scaling = scaling
        self.gaussian = list(gaussian)
        self.rates = [list(map(float, r)) for r in rates]
        gen_device = self.device if self.device.type != "mps" else "cpu"
        if self.backend == "torch":
            self.gens = [rng.generator(s, stream, device=gen_device) for s in seeds]
        self.member_seeds = torch.tensor([rng.derive(s, stream) for s in seeds], dtype=torch.int64)
        self.any_gauss = any(self.gaussian)
        self.all_gauss = all(self.gaussian)
        col = (self.K, 1, 1)
        g = torch.tensor(self.gaussian, device=self.device).view(col)
        self.is_gauss = g
        self.slots = []
        for r in self.rates:
            keep = torch.tensor([1.0 - x for x in r], dtype=dtype, device=self.device).view(col)
            # Bernoulli: 16 random bits per unit, kept iff bits < keep * 2^16 (keep is thus
            # resolved to 1/65536; rate 0.5 is exact). Stored as an int32 threshold on the
            # signed int16 view of the bits.
            thresh = torch.tensor(
                [round((1.0 - x) * _TWO16) - (1 << 15) for x in r],
                dtype=torch.int32,
                device=self.device,
            ).view(col)
            scale = 1.0 / keep if scaling == "inverted" else torch.ones_like(keep)
            sigma = torch.tensor(
                [math.sqrt(x / (1.0 - x)) for x in r], dtype=dtype, device=self.device
            ).view(col)
            cpu_keep = torch.tensor(
                [1.0 if g else 1.0 - x for x, g in zip(r, self.gaussian)], dtype=torch.float64
            ).view(col)  # Bernoulli keep; 1 for Gaussian members (kernel backend)
            cpu_sigma = torch.tensor(
                [math.sqrt(x / (1.0 - x)) if g else 0.0 for x, g in zip(r, self.gaussian)],
                dtype=torch.float64,
            ).view(col)
            self.slots.append(
                {
                    "cpu_keep": cpu_keep,
                    "cpu_sigma": cpu_sigma,
                    "any_bern": any(x > 0 and not g for x, g in zip(r, self.gaussian)),
                    "any_gauss": any(x > 0 and g for x, g in zip(r, self.gaussian)),
                    "active": [x > 0 for x in r],
                    "any": any(x > 0 for x in r),
                    "keep": keep,
                    "thresh": thresh,
                    "scale": scale,
                    "sigma": sigma,
                }
            )

    def advance(self) -> None:
        """Move to the next forward pass (fresh masks on the kernel backend)."""
        self.counter += 1

    def eval_scale(self, slot: int) -> torch.Tensor | None:
        """The deterministic-evaluation factor of a slot: ``keep`` for classic-scaled
        Bernoulli members, 1 otherwise; None when it is 1 for every member."""
        s = self.slots[slot]
        if self.scaling != "classic" or not s["any"] or self.all_gauss:
            return None
        return torch.where(self.is_gauss, torch.ones_like(s["keep"]), s["keep"])


def batched_dropout(x: torch.Tensor, noise: MemberNoise, slot: int) -> torch.Tensor:
    """Apply member k's dropout of ``slot`` to ``x[k]`` for every k.

    Bernoulli: ``x * m / keep_k`` (inverted) or ``x * m`` (classic), ``m ~ Bernoulli(keep_k)``
    elementwise. Gaussian: ``x * (1 + sigma_k z)``, ``z ~ N(0, 1)``,
    ``sigma_k^2 = rate_k / (1 - rate_k)`` (same mean and variance as inverted Bernoulli).

    Shape: x ``(K, B, H)`` -> ``(K, B, H)``.
    """
    s = noise.slots[slot]
    if not s["any"]:
        return x
    if noise.backend == "kernel":
        offset = noise.counter * len(noise.slots) + slot
        if s["any_bern"]:
            x = _kernels.bernoulli(
                x, s["cpu_keep"], 0, offset, scaling=noise.scaling, member_seeds=noise.member_seeds
            )
        if s["any_gauss"]:
            x = _kernels.gaussian(x, s["cpu_sigma"], 0, offset, member_seeds=noise.member_seeds)
        return x
    K = x.shape[0]
    per = x[0].numel()
    mult = None
    if not noise.all_gauss:
        words = (per + 3) // 4
        bits = torch.empty(K, words, dtype=torch.int64, device=x.device)
        for k in range(K):
            if s["active"][k] and not noise.gaussian[k]:
                bits[k].random_(-(1 << 63), None, generator=noise.gens[k])
        bits16 = bits.view(torch.int16)[:, :per].reshape(x.shape)  # (K, B, H)
        mult = (bits16 < s["thresh"]) * s["scale"]  # (K, B, H) in {0, scale}
    if noise.any_gauss:
        z = torch.zeros_like(x)  # rows of inactive members stay 0 (noise 1)
        for k in range(K):
            if s["active"][k] and noise.gaussian[k]:
                z[k].normal_(generator=noise.gens[k])
        gmult = torch.addcmul(torch.ones_like(x), z, s["sigma"])  # (K, B, H)
        mult = gmult if mult is None else torch.where(noise.is_gauss, gmult, mult)
    return x * mult
