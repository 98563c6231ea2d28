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
    """Curves of K members and the metrics at each member's selected (best-val) epoch."""

    def __init__(self, K: int, task: str, select: str) -> None:
        self.K, self.task, self.select = K, task, select
        if select == "val_acc" and task != "classification":
            raise ValueError("select='val_acc' needs a classification task; use 'val_loss'")
        self.curves: list[dict[str, list[float]]] = [{"epoch": []} for _ in range(K)]
        self.best: list[dict[str, float]] = [{} for _ in range(K)]
        self._score = torch.full((K,), float("inf"))

    def record(self, epoch: int, results: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        """Add one evaluation (``results[split][metric]`` of shape (K,)); returns the
        (K,) bool mask of members whose selected weights are now these."""
        flat = {
            f"{s}_{m}": v.detach().float().cpu() for s, r in results.items() for m, v in r.items()
        }
        for k in range(self.K):
            c = self.curves[k]
            c["epoch"].append(epoch)
            for name, v in flat.items():
                c.setdefault(name, []).append(float(v[k]))
        if self.select == "last":
            score = torch.full((self.K,), -float(epoch))
        elif self.select == "val_acc":
            score = -flat["val_acc"]
        else:
            score = flat["val_loss"]
        score = torch.nan_to_num(score, nan=float("inf"))
        first = torch.tensor([not b for b in self.best])
        improved = (score < self._score) | first  # ties keep the earlier epoch
        self._score = torch.where(improved, score, self._score)
        for k in range(self.K):
            if bool(improved[k]):
                self.best[k] = {name: float(v[k]) for name, v in flat.items()}
                self.best[k]["best_epoch"] = float(epoch)
        return improved

    def override(self, k: int, values: dict[str, float]) -> None:
        """Replace member k's selected-epoch metrics (e.g. train metrics on all rows)."""
        self.best[k].update(values)

    def final(self, k: int, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Member k's metrics at its selected epoch, with errors and the generalization gap."""
        m = dict(self.best[k])
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
        return m
