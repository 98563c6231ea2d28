"""Dropout for sequence models: LockedDropout (one mask for every time step) and
EmbeddingDropout (whole words dropped from an embedding)."""

from __future__ import annotations

import torch
from torch import nn

from droplab import functional as F
from droplab._validate import DEFAULT_RATE, check_bool, check_rate
from droplab.layers._seed import init_randomness
from droplab.layers.bernoulli import TorchNames, rate_repr

__all__ = ["EmbeddingDropout", "LockedDropout"]


class LockedDropout(TorchNames, nn.Module):
    r"""Variational ("locked") dropout of sequences: one Bernoulli(keep) mask per sequence
    and feature, shared by every time step, :math:`y_{t,n,d} = x_{t,n,d}\, m_{n,d}/\text{keep}`
    (Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout in RNNs";
    Merity et al. 2018, AWD-LSTM). Identity in eval.

    Args:
        rate: probability of dropping a feature of a sequence (or ``p``, or ``keep``).
        batch_first: input ``(N, T, D)`` instead of ``(T, N, D)`` (as ``nn.LSTM``).

    Shape:
        Input: ``(T, N, *)``, or ``(N, T, *)`` with ``batch_first``. Output: same shape.

    Example:
        >>> import torch, droplab as dl
        >>> y = dl.LockedDropout(0.5)(torch.ones(7, 2, 3))  # (T, N, D)
        >>> bool((y == y[:1]).all())  # the same mask at every time step
        True
    """

    def __init__(
        self,
        rate: float | None = DEFAULT_RATE,
        *,
        p: float | None = None,
        keep: float | None = None,
        batch_first: bool = False,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.rate, self.keep = check_rate(rate, keep, p=p)
        self.batch_first = check_bool(batch_first, "batch_first")
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2:
            raise ValueError(
                "LockedDropout expects input of shape (T, N, *) (or (N, T, *) with "
                f"batch_first=True), got shape {tuple(x.shape)}"
            )
        time_dim = 1 if self.batch_first else 0
        return F.dropout(
            x, self.rate, training=self.training, broadcast_dims=time_dim, generator=self.generator
        )

    def extra_repr(self) -> str:
        s = rate_repr(self.rate, self.keep)
        return s + ", batch_first=True" if self.batch_first else s


class EmbeddingDropout(TorchNames, nn.Module):
    r"""Embedding dropout (Gal & Ghahramani 2016; Merity et al. 2018): whole words are
    dropped, i.e. rows of the wrapped embedding's weight, :math:`\tilde E_w = E_w m_w /
    \text{keep}` with one Bernoulli(keep) per vocabulary entry and forward pass, so every
    occurrence of a dropped word in the batch is zero. Eval uses :math:`E`. The wrapped
    embedding stays a submodule (``self.module``), with its usual ``state_dict`` keys.

    Args:
        module: the ``nn.Embedding`` to wrap.
        rate: probability of dropping a word (or ``p``, or ``keep``).

    Shape:
        Input: integer indices ``(*)``. Output: ``(*, embedding_dim)``.

    Example:
        >>> import torch, droplab as dl
        >>> emb = dl.EmbeddingDropout(torch.nn.Embedding(10, 4), 0.5)
        >>> emb(torch.tensor([[1, 2, 1]])).shape
        torch.Size([1, 3, 4])
    """

    def __init__(
        self,
        module: nn.Embedding,
        rate: float | None = DEFAULT_RATE,
        *,
        p: float | None = None,
        keep: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Embedding):
            raise TypeError(f"EmbeddingDropout wraps an nn.Embedding, got {type(module).__name__}")
        self.module = module
        self.rate, self.keep = check_rate(rate, keep, p=p)
        init_randomness(self, generator, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.module
        w = F.dropout(  # (V, D), one mask value per row: broadcast along the features
            e.weight, self.rate, training=self.training, broadcast_dims=1, generator=self.generator
        )
        return nn.functional.embedding(
            x, w, e.padding_idx, e.max_norm, e.norm_type, e.scale_grad_by_freq, e.sparse
        )

    def extra_repr(self) -> str:
        return rate_repr(self.rate, self.keep)
