"""Batched dropout for the fast path: K members, each with its own masks stream.

Everything random in a batched step goes through :func:`batched_dropout`, so switching
the mask generator (counter-based kernel or per-member torch generators) is one place.

Reproducibility contract: member k's masks depend only on its own seed and on the shapes
(batch size, widths), never on the other members, so member k trained alone (K=1) sees
exactly the masks it sees in a batch. Members whose rate is 0 for a slot draw nothing.
"""

from __future__ import annotations

import math

import torch

from droplab import rng

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
    ) -> None:
        self.K = len(seeds)
        self.device = torch.device(device)
        self.scaling = scaling
        self.gaussian = list(gaussian)
        self.rates = [list(map(float, r)) for r in rates]
        gen_device = self.device if self.device.type != "mps" else "cpu"
        self.gens = [rng.generator(s, stream, device=gen_device) for s in seeds]
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
            self.slots.append(
                {
                    "active": [x > 0 for x in r],
                    "any": any(x > 0 for x in r),
                    "keep": keep,
                    "thresh": thresh,
                    "scale": scale,
                    "sigma": sigma,
                }
            )

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
