"""Per-epoch metrics of K members, best-on-val selection and the final metrics dict."""

from __future__ import annotations

import torch

from droplab.train import metrics as M

__all__ = ["Tracker", "split_metrics"]

SPLITS = ("train", "val", "test")


def split_metrics(out: torch.Tensor, y: torch.Tensor, task: str) -> dict[str, torch.Tensor]:
    """Metrics of K members on one split.

    Args:
        out: classification: class probabilities ``(K, n, C)``; regression: predictions
            ``(K, n)``.
        y: targets ``(n,)``.

    Returns:
        name -> ``(K,)`` tensor: ``loss, acc, nll, ece`` (classification, loss = NLL) or
        ``loss, rmse`` (regression, loss = MSE).
    """
    if task == "classification":
        nll = M.nll(out, y)
        return {
            "loss": nll,
            "acc": M.accuracy(out, y),
            "nll": nll,
            "ece": M.ece(out, y, bins=15),
        }
    r = M.rmse(out, y)
    return {"loss": r * r, "rmse": r}


class Tracker:
    """Curves of K members, the metrics at each member's selected (best-val) epoch, and
    the patience rule.

    ``patience``: None, or the number of consecutive evaluations without an improvement
    of the selection score after which a member is done (:attr:`exhausted`). It counts
    evaluations, not epochs. ``stale[k]`` is member k's count of evaluations since its
    last improvement.
    """

    def __init__(self, K: int, task: str, select: str, patience: int | None = None) -> None:
        self.K, self.task, self.select, self.patience = K, task, select, patience
        if select == "val_acc" and task != "classification":
            raise ValueError("select='val_acc' needs a classification task; use 'val_loss'")
        self.curves: list[dict[str, list[float]]] = [{"epoch": []} for _ in range(K)]
        self.best: list[dict[str, float]] = [{} for _ in range(K)]
        self._score = torch.full((K,), float("inf"))
        self.stale = [0] * K
        self.exhausted = [False] * K  # the patience rule fired for member k

    def record(
        self,
        epoch: int,
        results: dict[str, dict[str, torch.Tensor]],
        members: list[int] | None = None,
    ) -> torch.Tensor:
        """Add one evaluation (``results[split][metric]`` of shape (n,), row i belonging
        to member ``members[i]``; all K members in order when ``members`` is None).

        Returns the (n,) bool mask of rows whose selected weights are now these. Updates
        ``stale`` and, with a patience, ``exhausted``."""
        idx = list(range(self.K)) if members is None else list(members)
        flat = {
            f"{s}_{m}": v.detach().float().cpu() for s, r in results.items() for m, v in r.items()
        }
        for i, k in enumerate(idx):
            c = self.curves[k]
            c["epoch"].append(epoch)
            for name, v in flat.items():
                c.setdefault(name, []).append(float(v[i]))
        n = len(idx)
        if self.select == "last":
            score = torch.full((n,), -float(epoch))
        elif self.select == "val_acc":
            score = -flat["val_acc"]
        else:
            score = flat["val_loss"]
        score = torch.nan_to_num(score, nan=float("inf"))
        first = torch.tensor([not self.best[k] for k in idx])
        prev = self._score[idx]
        improved = (score < prev) | first  # ties keep the earlier epoch
        self._score[idx] = torch.where(improved, score, prev)
        for i, k in enumerate(idx):
            if bool(improved[i]):
                self.best[k] = {name: float(v[i]) for name, v in flat.items()}
                self.best[k]["best_epoch"] = float(epoch)
                self.stale[k] = 0
            else:
                self.stale[k] += 1
            if self.patience is not None and self.stale[k] >= self.patience:
                self.exhausted[k] = True
        return improved

    def override(self, k: int, values: dict[str, float]) -> None:
        """Replace member k's selected-epoch metrics (e.g. train metrics on all rows)."""
        self.best[k].update(values)

    def final(self, k: int, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Member k's metrics at its selected epoch, with errors, the generalization gap,
        ``stopped_epoch`` and ``capped``."""
        best = self.best[k]
        # split metrics in SPLITS order, then the rest (best_epoch), however they arrived
        # (a split evaluated only at the end comes in through override)
        names = [x for s in SPLITS for x in best if x.startswith(f"{s}_")]
        m = {x: best[x] for x in names} | {x: v for x, v in best.items() if x not in names}
        if extra:
            m.update(extra)
        if self.task == "classification":
            for s in SPLITS:
                if f"{s}_acc" in m:
                    m[f"{s}_error"] = 1.0 - m[f"{s}_acc"]
            # gap: train accuracy minus test accuracy (fraction); gap_loss: test minus train loss.
            m["gap"] = m["train_acc"] - m["test_acc"]
        else:
            m["gap"] = m["test_rmse"] - m["train_rmse"]
        m["gap_loss"] = m["test_loss"] - m["train_loss"]
        epochs = self.curves[k]["epoch"]
        # the last evaluation is the last epoch trained (fits always evaluate it)
        m["stopped_epoch"] = float(epochs[-1]) if epochs else 0.0
        m["capped"] = 0.0 if self.exhausted[k] else 1.0
        return m
