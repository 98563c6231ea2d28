"""The :class:`Dataset` container, train-only standardization and seeded splits.

Everything here is a pure function of its arguments: splits draw from
:func:`droplab.rng.numpy_rng`, statistics are computed in float64 with numpy's
(single-threaded, pairwise) reductions, and the transforms are elementwise float32 ops,
so the same call gives the same bytes on any machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from droplab import rng

__all__ = ["Dataset", "fit_standardization", "from_arrays", "pick", "stratified_pick"]

Task = Literal["classification", "regression"]
Standardization = Literal["feature", "channel", "none"]

# A feature whose train std is below this is constant on train: it is centred, not scaled
# (scaling it would turn float noise on val/test into huge values).
_MIN_STD = 1e-6
_CHUNK = 4096  # rows per chunk when accumulating statistics (bounds float64 temporaries)


def _grouped(x: np.ndarray, mode: Standardization, channels: int | None) -> np.ndarray:
    """View x as (n, G, L): statistics are taken per group G over axes (0, 2)."""
    n = x.shape[0]
    if mode == "feature":
        return x.reshape(n, -1, 1)  # (n, D, 1): one group per feature
    if channels is None:
        raise ValueError("channel standardization needs the number of channels")
    return x.reshape(n, channels, -1)  # (n, C, H*W): works for (C, H, W) and flattened


def fit_standardization(
    x: np.ndarray, mode: Standardization, channels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``x`` per feature (``mode="feature"``) or per channel.

    Two passes in float64 over fixed row chunks, so the result does not depend on the
    thread count. A std below ``1e-6`` is replaced by 1 (the feature is only centred).

    Args:
        x: (n, *shape) array, n >= 1.
        mode: ``"feature"``: one statistic per element of ``shape``;
            ``"channel"``: one per channel (dim 0 of ``shape``, or blocks of a
            C-order flattened image).
        channels: the channel count, for ``mode="channel"``.

    Returns:
        ``(mean, std)`` float64 arrays of shape ``shape`` (feature) or ``(C,)`` (channel).
    """
    g = _grouped(x, mode, channels)  # (n, G, L)
    n, groups, length = g.shape
    total = np.zeros(groups)
    for start in range(0, n, _CHUNK):
        total += g[start : start + _CHUNK].sum(axis=(0, 2), dtype=np.float64)
    mean = total / (n * length)  # (G,)
    sq = np.zeros(groups)
    for start in range(0, n, _CHUNK):
        d = g[start : start + _CHUNK].astype(np.float64) - mean[None, :, None]
        sq += (d * d).sum(axis=(0, 2))
    std = np.sqrt(sq / (n * length))
    std = np.where(std < _MIN_STD, 1.0, std)
    if mode == "feature":
        return mean.reshape(x.shape[1:]), std.reshape(x.shape[1:])
    return mean, std


def _apply(
    x: torch.Tensor, mode: str, mean: torch.Tensor, std: torch.Tensor, *, inplace: bool = False
) -> torch.Tensor:
    """(x - mean) / std with float32 stats broadcast as ``fit_standardization`` made them.

    ``inplace=True`` overwrites ``x`` (saves a copy of a large image set)."""
    n = x.shape[0]
    if mode == "feature":
        m, s, g = mean, std, x
    else:
        m, s, g = mean[:, None], std[:, None], x.reshape(n, mean.shape[0], -1)  # (n, C, L)
    if inplace:
        g.sub_(m).div_(s)
        return x
    return ((g - m) / s).reshape(x.shape)


def _invert(x: torch.Tensor, mode: str, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    if mode == "feature":
        return x * std + mean
    n = x.shape[0]
    g = x.reshape(n, mean.shape[0], -1)  # (n, C, L)
    return (g * std[:, None] + mean[:, None]).reshape(x.shape)


def stratified_pick(y: np.ndarray | None, n_pick: int, gen: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n_pick`` of ``len(y)`` items, stratified by class when ``y`` given.

    Each class ``k`` of count ``c_k`` gets ``floor(n_pick * c_k / N)`` items plus one more
    for the classes with the largest remainders (ties: lower class first), so class
    proportions are kept to within one item. Within a class the items are a uniformly
    random choice. ``y=None`` (regression) picks uniformly without replacement.
    """
    if y is None:
        raise TypeError("stratified_pick needs labels; use a permutation for regression")
    n = len(y)
    classes, counts = np.unique(y, return_counts=True)
    quota = n_pick * counts / n
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_pick - int(take.sum())]] += 1
    picked = []
    for cls, k in zip(classes, take):
        members = np.flatnonzero(y == cls)
        picked.append(members[gen.permutation(len(members))[:k]])
    return np.sort(np.concatenate(picked))


def pick(y: np.ndarray | None, n_total: int, n_pick: int, gen: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n_pick`` of ``n_total`` items: stratified by class for labels
    ``y``, uniform without replacement for ``y=None`` (regression)."""
    if y is None:
        return np.sort(gen.permutation(n_total)[:n_pick])
    return stratified_pick(y, n_pick, gen)


@dataclass(eq=False)
class Dataset:
    """Train / val / test splits of one dataset, standardized with train statistics.

    Shapes: ``x_*`` float32 ``(n, *input_shape)``; ``y_*`` int64 ``(n,)`` class indices for
    classification, float32 ``(n,)`` standardized targets for regression.

    Standardization: ``x' = (x - x_mean) / x_std`` with ``x_mean``/``x_std`` fitted on
    ``x_train`` only, per feature (``standardization="feature"``, stats of shape
    ``input_shape``) or per channel (``"channel"``, stats of shape ``(C,)``). For
    regression ``y' = (y - y_mean) / y_scale``; an RMSE on ``y'`` times ``y_scale`` is the
    RMSE in the original units.

    Example:
        >>> from droplab import data
        >>> ds = data.load("digits", seed=0)
        >>> small = ds.subset(100, seed=1)      # 100 train points, same val/test
        >>> small.x_train.shape
        torch.Size([100, 64])
    """

    name: str
    task: Task
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int | None
    input_shape: tuple[int, ...]
    standardization: Standardization = "none"
    x_mean: torch.Tensor | None = None
    x_std: torch.Tensor | None = None
    y_mean: float = 0.0
    y_scale: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_outputs(self) -> int:
        """Width of a model's output layer: ``n_classes``, or 1 for regression."""
        return 1 if self.task == "regression" else int(self.n_classes or 0)

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def __repr__(self) -> str:
        classes = f", n_classes={self.n_classes}" if self.task == "classification" else ""
        return (
            f"Dataset({self.name!r}, {self.task}, train={len(self.y_train)}, "
            f"val={len(self.y_val)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}{classes}, device={self.device})"
        )

    def to(self, device: str | torch.device) -> Dataset:
        """A copy with every tensor on ``device`` (the same object if already there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)

    def subset(self, n_train: int, seed: int) -> Dataset:
        """The same dataset with ``n_train`` training points drawn by ``seed``.

        The points are a uniformly random choice from ``x_train`` (stratified by class
        for classification: each class keeps its proportion to within one point), drawn
        from the stream ``rng.numpy_rng(seed, "subset")``; val and test are unchanged.
        Standardization is refitted on the chosen points only, as if the dataset had
        been loaded with that training set, and applied to val and test again.

        Args:
            n_train: number of training points, ``1 <= n_train <= len(y_train)``.
            seed: the subset's seed.
        """
        n_have = len(self.y_train)
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)):
            raise TypeError(f"n_train must be an int, got {type(n_train).__name__} {n_train!r}")
        if not 1 <= n_train <= n_have:
            raise ValueError(f"n_train must be in [1, {n_have}] (the train split), got {n_train}")
        labels = self.y_train.cpu().numpy() if self.task == "classification" else None
        idx = pick(labels, n_have, int(n_train), rng.numpy_rng(seed, "subset"))
        index = torch.from_numpy(idx).to(self.device)
        x_tr, y_tr = self.x_train[index], self.y_train[index]  # (n_train, *input_shape)
        x_va, x_te, y_va, y_te = self.x_val, self.x_test, self.y_val, self.y_test
        changes: dict[str, Any] = {}
        if self.standardization != "none" and self.x_mean is not None:
            mode, mean, std = self.standardization, self.x_mean, self.x_std
            raw_tr = _invert(x_tr, mode, mean, std)
            channels = mean.shape[0] if mode == "channel" else None
            m, s = fit_standardization(raw_tr.cpu().numpy(), mode, channels)
            new_mean = torch.from_numpy(m.astype(np.float32)).to(self.device)
            new_std = torch.from_numpy(s.astype(np.float32)).to(self.device)
            x_tr = _apply(raw_tr, mode, new_mean, new_std)
            x_va = _apply(_invert(x_va, mode, mean, std), mode, new_mean, new_std)
            x_te = _apply(_invert(x_te, mode, mean, std), mode, new_mean, new_std)
            changes.update(x_mean=new_mean, x_std=new_std)
        if self.task == "regression":
            raw = [y * self.y_scale + self.y_mean for y in (y_tr, y_va, y_te)]
            ym, ys = fit_standardization(raw[0].cpu().numpy().reshape(-1, 1), "feature")
            ym, ys = float(ym[0]), float(ys[0])
            y_tr, y_va, y_te = ((y - ym) / ys for y in raw)
            changes.update(y_mean=ym, y_scale=ys)
        meta = {**self.meta, "subset": {"n_train": int(n_train), "seed": int(seed)}}
        return dataclasses.replace(
            self,
            x_train=x_tr,
            y_train=y_tr,
            x_val=x_va,
            y_val=y_va,
            x_test=x_te,
            y_test=y_te,
            meta=meta,
            **changes,
        )


def from_arrays(
    name: str,
    task: Task,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    n_val: int,
    n_classes: int | None = None,
    channels: int | None = None,
    flatten: bool = False,
    standardize: bool = True,
    meta: dict[str, Any] | None = None,
) -> Dataset:
    """Build a :class:`Dataset` from raw arrays: carve val, standardize, convert.

    ``n_val`` points of the training pool become the validation split (stratified by
    class for classification), drawn from ``rng.numpy_rng(seed, "data", "val")``; the rest
    is the train split, and the only data the standardization statistics see.

    Args:
        name: the dataset's name (for repr and errors).
        task: ``"classification"`` or ``"regression"``.
        x_pool: (N, *shape) training pool; x_test: (M, *shape).
        y_pool: (N,) labels in ``[0, n_classes)`` or real targets; y_test: (M,).
        seed: seed of the validation split.
        n_val: size of the validation split, ``0 <= n_val < N``.
        n_classes: number of classes (classification).
        channels: for images ``shape = (C, H, W)``: standardize per channel; ``None``:
            per feature.
        flatten: return images as ``C*H*W`` vectors (after per-channel standardization).
        standardize: ``False`` leaves x (and y) as given.
        meta: extra provenance stored in ``Dataset.meta``.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    n_pool = len(y_pool)
    if not 0 <= n_val < n_pool:
        raise ValueError(
            f"{name}: n_val must be in [0, {n_pool - 1}] (the training pool has {n_pool}), "
            f"got {n_val}"
        )
    x_pool = np.ascontiguousarray(x_pool, dtype=np.float32)
    x_test = np.array(x_test, dtype=np.float32, order="C", copy=True)  # ours to overwrite
    if x_pool.shape[1:] != x_test.shape[1:] or len(x_pool) != n_pool or len(x_test) != len(y_test):
        raise ValueError(
            f"{name}: shapes disagree: x_pool {x_pool.shape}, y_pool ({n_pool},), "
            f"x_test {x_test.shape}, y_test ({len(y_test)},)"
        )
    classify = task == "classification"
    labels = np.asarray(y_pool, dtype=np.int64) if classify else None
    if classify:
        if n_classes is None:
            raise ValueError(f"{name}: classification needs n_classes")
        for split, y in (("train", y_pool), ("test", y_test)):
            y = np.asarray(y)
            if len(y) and (y.min() < 0 or y.max() >= n_classes):
                raise ValueError(
                    f"{name}: {split} labels must be in [0, {n_classes}), "
                    f"got min {y.min()} max {y.max()}"
                )
    val_idx = pick(labels, n_pool, n_val, rng.numpy_rng(seed, "data", "val"))
    keep = np.ones(n_pool, dtype=bool)
    keep[val_idx] = False
    train_idx = np.flatnonzero(keep)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    xs = [tensor(x_pool[train_idx]), tensor(x_pool[val_idx]), tensor(x_test)]
    mode: Standardization = "none"
    x_mean = x_std = None
    if standardize:
        mode = "channel" if channels is not None else "feature"
        m, s = fit_standardization(xs[0].numpy(), mode, channels)  # train only
        x_mean = torch.from_numpy(m.astype(np.float32))
        x_std = torch.from_numpy(s.astype(np.float32))
        xs = [_apply(x, mode, x_mean, x_std, inplace=True) for x in xs]  # own copies
    if flatten:
        xs = [x.reshape(x.shape[0], -1) for x in xs]  # (n, C*H*W)

    y_mean, y_scale = 0.0, 1.0
    if classify:
        ys = [
            tensor(np.asarray(y, dtype=np.int64))
            for y in (y_pool[train_idx], y_pool[val_idx], y_test)
        ]
    else:
        y_pool = np.asarray(y_pool, dtype=np.float32)
        ys = [
            tensor(y) for y in (y_pool[train_idx], y_pool[val_idx], np.asarray(y_test, np.float32))
        ]
        if standardize:
            ym, ysd = fit_standardization(y_pool[train_idx].reshape(-1, 1), "feature")
            y_mean, y_scale = float(ym[0]), float(ysd[0])
            ys = [(y - y_mean) / y_scale for y in ys]
    return Dataset(
        name=name,
        task=task,
        x_train=xs[0],
        y_train=ys[0],
        x_val=xs[1],
        y_val=ys[1],
        x_test=xs[2],
        y_test=ys[2],
        n_classes=int(n_classes) if classify and n_classes is not None else None,
        input_shape=tuple(xs[0].shape[1:]),
        standardization=mode,
        x_mean=x_mean,
        x_std=x_std,
        y_mean=y_mean,
        y_scale=y_scale,
        meta={"seed": int(seed), **(meta or {})},
    )
