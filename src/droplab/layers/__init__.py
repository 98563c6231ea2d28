"""The dropout family as ``torch.nn.Module``s; the math lives in :mod:`droplab.functional`.

One family per file: ``bernoulli`` (Dropout, FixedCountDropout), ``gaussian``
(GaussianDropout, GaussianNoise, AlphaDropout), ``structured`` (SpatialDropout, DropBlock),
``droppath`` (DropPath), ``dropconnect`` (DropConnect), ``mc`` (MC-dropout helpers).
"""

from __future__ import annotations

from droplab.layers.bernoulli import Dropout

__all__ = ["Dropout"]
