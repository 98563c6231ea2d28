"""Shared layer specs for tests/layers: every layer with an odd, non-square input shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import droplab as dl


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def seeded_linear(*args) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Linear(*args)


def seeded_conv2d(*args) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Conv2d(*args)


@dataclass(frozen=True)
class LayerSpec:
    name: str
    make: Callable[[torch.Generator | None], nn.Module]
    shape: tuple[int, ...]
    multiplicative: bool = True  # y = x * (random factor independent of x)

    def __repr__(self) -> str:
        return self.name


def seed_of(g: torch.Generator | None) -> int | None:
    """The int ``seed=`` that stands for the generator the contract tests pass."""
    return None if g is None else g.initial_seed()


LAYERS = [
    LayerSpec("dropout", lambda g: dl.Dropout(0.3, generator=g), (6, 5, 7)),
    LayerSpec(
        "dropout-classic-bcast",
        lambda g: dl.Dropout(keep=0.6, scaling="classic", broadcast_dims=1, generator=g),
        (6, 5, 7),
    ),
    LayerSpec("dropout-seed", lambda g: dl.Dropout(0.3, seed=seed_of(g)), (6, 5, 7)),
    LayerSpec("dropblock-seed", lambda g: dl.DropBlock(0.3, 2, seed=seed_of(g)), (4, 3, 5, 6)),
    LayerSpec("consistent", lambda g: dl.ConsistentDropout(0.3, generator=g), (6, 5, 7)),
    LayerSpec("locked", lambda g: dl.LockedDropout(0.3, generator=g), (6, 5, 7)),
    LayerSpec(
        "locked-batch-first",
        lambda g: dl.LockedDropout(0.3, batch_first=True, generator=g),
        (5, 6, 3, 2),
    ),
    LayerSpec("fixed-count", lambda g: dl.FixedCountDropout(0.3, generator=g), (6, 5, 7)),
    LayerSpec("gaussian-dropout", lambda g: dl.GaussianDropout(0.3, generator=g), (6, 5, 7)),
    LayerSpec("gaussian-noise", lambda g: dl.GaussianNoise(0.5, generator=g), (6, 5, 7), False),
    LayerSpec("alpha-dropout", lambda g: dl.AlphaDropout(0.3, generator=g), (6, 5, 7), False),
    LayerSpec(
        "feature-alpha-dropout",
        lambda g: dl.FeatureAlphaDropout(0.3, generator=g),
        (5, 6, 3, 7),
        False,
    ),
    LayerSpec(
        "spatial-unbatched",
        lambda g: dl.SpatialDropout(0.3, spatial_dims=2, generator=g),
        (6, 5, 7),
    ),
    LayerSpec("spatial-1d", lambda g: dl.SpatialDropout(0.3, generator=g), (6, 5, 7)),
    LayerSpec("spatial-3d", lambda g: dl.SpatialDropout(0.3, generator=g), (3, 4, 2, 5, 3)),
    LayerSpec("dropblock-1d", lambda g: dl.DropBlock(0.3, 3, generator=g), (4, 3, 11)),
    LayerSpec("dropblock-2d", lambda g: dl.DropBlock(0.3, (3, 2), generator=g), (3, 2, 7, 5)),
    LayerSpec(
        "dropblock-3d-coupled",
        lambda g: dl.DropBlock(0.3, (2, 3, 2), couple_channels=True, generator=g),
        (3, 2, 4, 5, 3),
    ),
    LayerSpec("droppath", lambda g: dl.DropPath(0.3, generator=g), (6, 5, 7)),
    # one draw per call: at keep 0.57 seed 7 keeps (u = 0.535) and seed 8 drops (u = 0.598),
    # so the contract's "other seeds differ" holds for this single Bernoulli
    LayerSpec("droppath-batch", lambda g: dl.DropPath(0.43, mode="batch", generator=g), (6, 5, 7)),
    LayerSpec(
        "concrete",
        lambda g: dl.ConcreteDropout(seeded_linear(7, 4), 0.3, generator=g),
        (6, 5, 7),
        False,
    ),
    LayerSpec(
        "dropconnect-linear",
        lambda g: dl.DropConnect(seeded_linear(7, 4), 0.3, generator=g),
        (6, 5, 7),
        False,
    ),
    LayerSpec(
        "dropconnect-conv",
        lambda g: dl.DropConnect(seeded_conv2d(2, 3, 3), 0.3, generator=g),
        (2, 2, 5, 7),
        False,
    ),
]
