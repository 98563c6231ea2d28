"""A layer's own random stream from an integer ``seed=`` (Keras), kept in its state_dict."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from droplab._validate import check_generator

__all__ = ["init_randomness"]


def init_randomness(module: nn.Module, generator: object, seed: object) -> None:
    """Set ``module.generator`` from ``generator=`` or ``seed=`` (at most one of them).

    ``seed``: the layer draws from its own CPU ``torch.Generator`` seeded with it, and its
    state is the buffer ``rng_state`` of the layer's ``state_dict``: saved as it is at
    ``state_dict()`` time and restored by ``load_state_dict``, so a reloaded layer goes on
    with the same stream as the saved one. ``generator``: the caller's generator, not
    saved. Neither: torch's global RNG.
    """
    module.generator = check_generator(generator)
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
    if generator is not None:
        raise ValueError(
            "give either generator (a torch.Generator) or seed (an int), not both; got "
            f"seed={seed!r}"
        )
    module.seed = int(seed)
    module.generator = torch.Generator().manual_seed(int(seed) % 2**64)
    module.register_buffer("rng_state", module.generator.get_state())
    module._register_state_dict_hook(_save_rng_state)
    module.register_load_state_dict_post_hook(_load_rng_state)


def _save_rng_state(module, state_dict, prefix, local_metadata):
    state_dict[prefix + "rng_state"] = module.generator.get_state()


def _load_rng_state(module, incompatible_keys):
    module.generator.set_state(module.rng_state.detach().to("cpu", torch.uint8))
