"""droplab: the dropout family of regularizers, and the instrument that measures what
dropout does.

    >>> import droplab as dl
    >>> layer = dl.Dropout(0.5)
"""

from __future__ import annotations

__version__ = "0.1.0"

from droplab import (
    functional,  # noqa: F401
    rng,  # noqa: F401
)
from droplab.findings import Findings  # noqa: F401
from droplab.layers import (  # noqa: F401  (the dropout family, at top level)
    AlphaDropout,
    ConcreteDropout,
    ConsistentDropout,
    DropBlock,
    DropConnect,
    Dropout,
    DropoutSchedule,
    DropPath,
    EmbeddingDropout,
    FeatureAlphaDropout,
    FixedCountDropout,
    GaussianDropout,
    GaussianNoise,
    LockedDropout,
    SpatialDropout,
    drop_block_schedule,
    drop_path_schedule,
    is_dropout,
    mc_mode,
    mc_predict,
    r_drop_loss,
    replace_dropout,
    restore_dropout,
    set_dropout_rate,
)
