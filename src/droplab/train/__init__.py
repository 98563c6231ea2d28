"""The batched trainer: K members (seeds x hyperparameters) trained as one computation.

>>> from droplab.train import TrainConfig, MemberConfig, fit
>>> res = fit(ModelSpec("mlp"), data, [MemberConfig(seed=s, hidden_rate=0.5) for s in range(16)],
...           TrainConfig(epochs=50))                                  # doctest: +SKIP
>>> res.members[0].metrics["test_acc"], res.module(0)                  # doctest: +SKIP
"""

from __future__ import annotations

from droplab.train import metrics
from droplab.train.config import MemberConfig, TrainConfig
from droplab.train.fit import FitResult, MemberResult, evaluate, fit

__all__ = ["FitResult", "MemberConfig", "MemberResult", "TrainConfig", "evaluate", "fit", "metrics"]
