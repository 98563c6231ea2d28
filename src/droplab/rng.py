"""The one owner of randomness in droplab.

A trial has one integer seed. Every random stream of the trial (data split, subset,
initialization, dropout masks, batch order, ...) is derived from ``(seed, stream name)``
with :func:`derive`, so streams are reproducible bit for bit and independent of each
other. Library code never seeds a global RNG: it takes a ``torch.Generator`` (or a seed)
from its caller, and studies make them here.

Example:
    >>> from droplab import rng
    >>> g = rng.generator(7, "masks", "member", 3)
    >>> rng.derive(7, "data") == rng.derive(7, "data")
    True
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import torch

__all__ = ["derive", "generator", "numpy_rng"]

_MASK63 = (1 << 63) - 1


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    return int(seed)


def derive(seed: int, *names: str | int) -> int:
    """Derive an independent 63-bit seed for the stream ``names`` of root ``seed``.

    The derivation is a BLAKE2b hash of the root seed and the stream names, so it is
    stable across Python versions, platforms and processes (unlike ``hash()``).

    Args:
        seed: the root seed (any Python int, negative allowed).
        *names: stream names (str or int), e.g. ``("masks", "member", 3)``.

    Returns:
        A non-negative int below 2**63, usable by ``torch.Generator.manual_seed`` and
        ``numpy.random.default_rng``.
    """
    seed = _check_seed(seed)
    h = hashlib.blake2b(digest_size=8)
    h.update(str(seed).encode())
    for name in names:
        if isinstance(name, bool) or not isinstance(name, (str, int, np.integer)):
            raise TypeError(f"stream names must be str or int, got {type(name).__name__} {name!r}")
        h.update(b"\x1f" + type(name).__name__[0].encode() + str(name).encode())
    return struct.unpack("<Q", h.digest())[0] & _MASK63


def generator(seed: int, *names: str | int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``derive(seed, *names)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive(seed, *names))
    return g


def numpy_rng(seed: int, *names: str | int) -> np.random.Generator:
    """A ``numpy.random.Generator`` seeded with ``derive(seed, *names)``."""
    return np.random.default_rng(derive(seed, *names))
