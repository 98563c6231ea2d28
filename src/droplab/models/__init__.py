"""Model factories with a dropout slot after every layer: MLP, CNN1d, CNN2d.

    >>> from droplab.models import ModelSpec, build
    >>> net = build(ModelSpec("mlp", widths=(256, 256)), (40,), 10, input_rate=0.2, hidden_rate=0.5)

`build` returns a plain ``torch.nn.Sequential`` of torch layers and droplab dropout
layers, so ``print(net)`` shows the whole recipe. The batched trainer
(:mod:`droplab.train`) trains the MLP without building it (stacked weights), and builds it
only to hand back one member as a module.
"""

from __future__ import annotations

from droplab.models.factory import (
    ACTIVATIONS,
    DROPOUTS,
    PLACEMENTS,
    ModelSpec,
    build,
    max_norm_,
)

__all__ = ["ACTIVATIONS", "DROPOUTS", "PLACEMENTS", "ModelSpec", "build", "max_norm_"]
