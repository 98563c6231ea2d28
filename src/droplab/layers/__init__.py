"""The dropout family as ``torch.nn.Module``s; the math lives in :mod:`droplab.functional`.

One family per file: ``bernoulli`` (Dropout, FixedCountDropout), ``gaussian``
(GaussianDropout, GaussianNoise, AlphaDropout), ``structured`` (SpatialDropout, DropBlock),
``droppath`` (DropPath), ``dropconnect`` (DropConnect), ``mc`` (MC-dropout helpers).
"""

from __future__ import annotations

from droplab.layers.bernoulli import Dropout, FixedCountDropout
from droplab.layers.concrete import ConcreteDropout
from droplab.layers.dropconnect import DropConnect
from droplab.layers.droppath import DropPath, drop_path_schedule
from droplab.layers.gaussian import (
    AlphaDropout,
    FeatureAlphaDropout,
    GaussianDropout,
    GaussianNoise,
)
from droplab.layers.mc import (
    ConsistentDropout,
    is_dropout,
    mc_mode,
    mc_predict,
    replace_dropout,
    restore_dropout,
)
from droplab.layers.rdrop import r_drop_loss
from droplab.layers.schedule import DropoutSchedule, set_dropout_rate
from droplab.layers.sequence import EmbeddingDropout, LockedDropout
from droplab.layers.structured import DropBlock, SpatialDropout, drop_block_schedule

__all__ = [
    "AlphaDropout",
    "ConcreteDropout",
    "ConsistentDropout",
    "DropBlock",
    "DropConnect",
    "DropPath",
    "Dropout",
    "DropoutSchedule",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "FixedCountDropout",
    "GaussianDropout",
    "GaussianNoise",
    "LockedDropout",
    "SpatialDropout",
    "drop_block_schedule",
    "drop_path_schedule",
    "is_dropout",
    "mc_mode",
    "mc_predict",
    "r_drop_loss",
    "replace_dropout",
    "restore_dropout",
    "set_dropout_rate",
]
