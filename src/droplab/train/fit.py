"""`fit`: train K members (a study's seeds x batched hyperparameters) and report metrics.

Two paths, one result type:

- **fast** (a `ModelSpec` of kind ``"mlp"`` with Bernoulli or Gaussian dropout): all K
  members in one computation on stacked weights (:mod:`droplab.train.mlp`).
- **generic** (any other spec, or a factory ``build(input_shape, n_outputs, *,
  input_rate, hidden_rate) -> nn.Module``, e.g. a user's model): member by member with a
  plain PyTorch loop. Randomness that the user's modules draw from torch's global RNG
  (init, ``nn.Dropout``) is seeded from the member's streams inside
  ``torch.random.fork_rng``, so the global state is restored afterwards.

Both paths give member k the same streams: ``derive(seed, "init")`` for initialization,
``"order"`` for the per-epoch permutation, ``"masks"`` for dropout, ``"mc"`` for MC
evaluation.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from droplab import rng
from droplab.models.factory import ModelSpec, build, max_norm_
from droplab.train.config import MemberConfig, TrainConfig, train_eval_stride
from droplab.train.mlp import fit_stacked, predict
from droplab.train.noise import MemberNoise
from droplab.train.tracking import Tracker, split_metrics

__all__ = ["FitResult", "MemberResult", "evaluate", "fit"]

ExtraLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class MemberResult:
    """One member: its config, metrics at the selected epoch, and per-evaluation curves.

    ``metrics``: ``{train,val,test}_{loss,acc,error,nll,ece}`` (classification) or
    ``{...}_{loss,rmse}`` (regression), ``gap`` (train_acc - test_acc; regression:
    test_rmse - train_rmse), ``gap_loss`` (test_loss - train_loss), ``best_epoch``,
    ``stopped_epoch`` (the last epoch trained: ``epochs`` unless patience stopped it) and
    ``capped`` (1.0 if patience never stopped it, else 0.0); with ``eval_mode="mc"`` the
    split metrics are MC averages and the deterministic ones are kept as ``det_*``.
    ``curves``: ``epoch`` and every metric of the ``curve_splits`` per evaluated epoch
    (deterministic), up to ``stopped_epoch``.
    """

    config: MemberConfig
    metrics: dict[str, float]
    curves: dict[str, list[float]]


@dataclass
class FitResult:
    """What `fit` returns: ``members[k]`` results, wall seconds, and ``module(k)``."""

    members: list[MemberResult]
    seconds: float
    path: str  # "fast" or "generic"
    _module: Callable[[int], nn.Module] = field(repr=False)
    # wall seconds: train_s, eval_s, train_last_epoch_s (the last epoch's training; fast
    # path); and member_steps: optimizer steps summed over members (both paths)
    timings: dict[str, float] = field(default_factory=dict)

    def module(self, k: int) -> nn.Module:
        """Member k as a plain torch module (droplab dropout layers), with its selected
        (best-val) weights, in eval mode."""
        if not 0 <= k < len(self.members):
            raise IndexError(f"member index k must be in [0, {len(self.members)}), got {k}")
        return self._module(k).eval()


def _use_fast(model, members) -> bool:
    """The stacked path covers MLPs and CNNs with Bernoulli/Gaussian dropout (per member),
    and CNNs with spatial dropout or DropBlock; other variants train member by member."""
    if not isinstance(model, ModelSpec):
        return False
    if model.kind != "mlp" and model.dropout in ("spatial", "dropblock"):
        return all(m.dropout is None for m in members)
    return all((m.dropout or model.dropout) in ("bernoulli", "gaussian") for m in members)


def fit(
    model: ModelSpec | Callable[..., nn.Module],
    data,
    members: list[MemberConfig],
    cfg: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    extra_loss: ExtraLoss | None = None,
) -> FitResult:
    """Train ``len(members)`` models on ``data`` and evaluate them.

    Args:
        model: a `ModelSpec` (MLPs and CNNs with Bernoulli/Gaussian dropout, and CNNs
            with spatial dropout or DropBlock, take the stacked path; other variants train member by
            member) or a factory ``build(input_shape, n_outputs, *, input_rate,
            hidden_rate) -> nn.Module``.
        data: a ``droplab.data.Dataset`` (``x_train, y_train, x_val, y_val, x_test,
            y_test, task, input_shape, n_outputs``).
        members: one `MemberConfig` per member (seed, rates, per-member overrides).
        cfg: the shared recipe.
        device: ``"cpu"``, ``"cuda"``, ... (data is moved there).
        extra_loss: stacked path only; ``extra_loss(hidden, weight, logits, keep) -> (K,)``
            added to each member's mean training loss, with ``hidden`` (K, B, H) the last
            hidden activations before that slot's dropout (CNN: the flattened last conv
            features), ``weight`` (K, O, H) the output
            layer's weights, ``logits`` (K, B, O), ``keep`` (K,) the members' keep of the
            last hidden slot.

    Returns:
        `FitResult`.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    members = list(members)
    if not members or not all(isinstance(m, MemberConfig) for m in members):
        raise ValueError("members must be a non-empty list of MemberConfig")
    if data.task not in ("classification", "regression"):
        raise ValueError(f"data.task must be 'classification' or 'regression', got {data.task!r}")
    if cfg.select == "val_acc" and data.task != "classification":
        raise ValueError("select='val_acc' needs a classification task; use 'val_loss'")
    device = torch.device(device)
    t0 = time.perf_counter()
    if _use_fast(model, members):
        res = _fit_fast(model, data, members, cfg, device, extra_loss)
    else:
        if cfg.rate_ramp:
            raise ValueError(
                f"rate_ramp={cfg.rate_ramp} needs the stacked path (a ModelSpec MLP or CNN "
                "with Bernoulli/Gaussian dropout, or a CNN with spatial dropout or "
                "DropBlock); use rate_ramp=0 here"
            )
        if extra_loss is not None:
            raise ValueError(
                "extra_loss needs the stacked path: model=ModelSpec('mlp' or 'cnn1d'/'cnn2d', "
                "...) with Bernoulli or Gaussian dropout"
            )
        if isinstance(model, ModelSpec):
            spec = model
            factory = _spec_factory(spec, members)
        elif callable(model):
            factory = lambda k, **kw: model(**kw)  # noqa: E731
        else:
            raise TypeError(f"model must be a ModelSpec or a factory, got {type(model).__name__}")
        res = _fit_generic(factory, data, members, cfg, device)
    res.seconds = time.perf_counter() - t0
    return res


def _spec_factory(spec: ModelSpec, members: list[MemberConfig]):
    def factory(k: int, **kw) -> nn.Module:
        s = spec if members[k].dropout is None else replace(spec, dropout=members[k].dropout)
        return build(s, **kw)

    return factory


def _fit_fast(spec, data, members, cfg, device, extra_loss) -> FitResult:
    K = len(members)
    tracker = Tracker(K, data.task, cfg.select, cfg.patience)
    timings: dict[str, float] = {}
    net, noise, best_W, best_b = fit_stacked(
        spec,
        data,
        members,
        cfg,
        device=device,
        extra_loss=extra_loss,
        tracker=tracker,
        timings=timings,
    )
    extra = [{} for _ in range(K)]
    if cfg.eval_mode == "mc":
        mc = MemberNoise(
            [m.seed for m in members],
            noise.rates,
            noise.gaussian,
            scaling=spec.scaling,
            device=device,
            spatial=noise.spatial,
            blocks=noise.blocks,
            stream="mc",
            backend=noise.backend,
        )
        for s in ("train", "val", "test"):
            x = net.prepare(getattr(data, f"x_{s}").to(device))
            y = getattr(data, f"y_{s}").to(device)
            out = predict(
                net,
                x,
                best_W,
                best_b,
                task=data.task,
                rates_noise=noise,
                mc=mc,
                samples=cfg.mc_samples,
                chunk=cfg.eval_batch,
            )
            r = split_metrics(out, y, data.task)
            for k in range(K):
                extra[k].update({f"{s}_{m}": float(v[k]) for m, v in r.items()})
    results = []
    for k, m in enumerate(members):
        metrics = tracker.final(k)
        if extra[k]:
            det = {
                f"det_{n}": v
                for n, v in metrics.items()
                if n.split("_")[0] in ("train", "val", "test")
            }
            metrics = tracker.final(k, extra[k])
            metrics.update(det)
        results.append(MemberResult(m, metrics, tracker.curves[k]))

    W = [w.detach().cpu() for w in best_W]
    b = [t.detach().cpu() for t in best_b]
    factory = _spec_factory(spec, members)

    def module(k: int) -> nn.Module:
        m = members[k]
        net_k = factory(
            k,
            input_shape=tuple(data.input_shape),
            n_outputs=data.n_outputs,
            input_rate=m.input_rate,
            hidden_rate=m.hidden_rate,
        )
        net.load_member(net_k, W, b, k)
        return net_k

    return FitResult(results, 0.0, "fast", module, timings)


def _fit_generic(factory, data, members, cfg, device) -> FitResult:
    task = data.task
    x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)
    n = x_tr.shape[0]
    full = {
        s: (getattr(data, f"x_{s}").to(device), getattr(data, f"y_{s}").to(device))
        for s in ("train", "val", "test")
    }
    stride = train_eval_stride(n, cfg.train_eval_rows)
    # curves: the curve splits, the train split on evenly spaced rows
    splits = {s: full[s] for s in ("train", "val", "test") if s in cfg.curve_splits}
    if "train" in splits:
        splits["train"] = (x_tr[::stride], y_tr[::stride])
    # evaluated once at the end on the selected weights: what the curves lack
    final = [s for s in ("train", "val", "test") if s not in splits]
    if "train" in splits and stride > 1:
        final.insert(0, "train")
    fork_devices = [device] if device.type == "cuda" else []
    results, states = [], []
    steps = 0
    for k, m in enumerate(members):
        kw = {
            "input_shape": tuple(data.input_shape),
            "n_outputs": data.n_outputs,
            "input_rate": m.input_rate,
            "hidden_rate": m.hidden_rate,
        }
        tracker = Tracker(1, task, cfg.select, cfg.patience)
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(rng.derive(m.seed, "init"))
            net = factory(k, **kw).to(device)
            if not isinstance(net, nn.Module):
                raise TypeError(f"the model factory must return an nn.Module, got {type(net)}")
            torch.manual_seed(rng.derive(m.seed, "masks"))
            opt = _torch_optimizer(net, m, cfg)
            c = cfg.max_norm if m.max_norm is None else m.max_norm
            order = rng.generator(m.seed, "order")
            best = copy.deepcopy(net.state_dict())
            for epoch in range(1, cfg.epochs + 1):
                net.train()
                perm = torch.randperm(n, generator=order).to(device)  # (n,)
                for start in range(0, n, cfg.batch_size):
                    idx = perm[start : start + cfg.batch_size]
                    out = net(x_tr[idx])
                    loss = _loss(out, y_tr[idx], task)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if c is not None:
                        max_norm_(net, c)
                    steps += 1
                if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                    net.eval()
                    res = {
                        s: _module_metrics(net, x, y, task, cfg.eval_batch)
                        for s, (x, y) in splits.items()
                    }
                    if bool(tracker.record(epoch, res)[0]):
                        best = copy.deepcopy(net.state_dict())
                    if tracker.exhausted[0]:  # patience ran out: keep the selected weights
                        break
            net.load_state_dict(best)
            net.eval()
            for s in final:
                x, y = full[s]
                r = _module_metrics(net, x, y, task, cfg.eval_batch)
                tracker.override(0, {f"{s}_{name}": float(v[0]) for name, v in r.items()})
            extra = {}
            if cfg.eval_mode == "mc":
                g = rng.generator(m.seed, "mc", device=device)
                for s, (x, y) in full.items():
                    r = evaluate(
                        net, x, y, task=task, mode="mc", samples=cfg.mc_samples, generator=g
                    )
                    extra.update({f"{s}_{name}": v for name, v in r.items()})
        metrics = tracker.final(0)
        if extra:
            det = {
                f"det_{n_}": v
                for n_, v in metrics.items()
                if n_.split("_")[0] in ("train", "val", "test")
            }
            metrics = tracker.final(0, extra)
            metrics.update(det)
        results.append(MemberResult(m, metrics, tracker.curves[0]))
        states.append({n_: t.detach().cpu() for n_, t in best.items()})

    def module(k: int) -> nn.Module:
        m = members[k]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rng.derive(m.seed, "init"))
            net = factory(
                k,
                input_shape=tuple(data.input_shape),
                n_outputs=data.n_outputs,
                input_rate=m.input_rate,
                hidden_rate=m.hidden_rate,
            )
        net.load_state_dict(states[k])
        return net

    return FitResult(results, 0.0, "generic", module, {"member_steps": float(steps)})


def _torch_optimizer(net: nn.Module, m: MemberConfig, cfg: TrainConfig):
    lr = cfg.lr if m.lr is None else m.lr
    wd = cfg.weight_decay if m.weight_decay is None else m.weight_decay
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return cls(net.parameters(), lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)
    return torch.optim.SGD(
        net.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=wd, nesterov=cfg.nesterov
    )


def _loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "classification":
        return nn.functional.cross_entropy(out, y)
    return (out.reshape(y.shape) - y).pow(2).mean()


@torch.no_grad()
def _predict_module(net: nn.Module, x: torch.Tensor, task: str, chunk: int) -> torch.Tensor:
    outs = [net(x[s : s + chunk]) for s in range(0, x.shape[0], chunk)]
    out = torch.cat(outs)
    return out.softmax(-1) if task == "classification" else out.reshape(-1)


def _module_metrics(net, x, y, task, chunk) -> dict[str, torch.Tensor]:
    out = _predict_module(net, x, task, chunk).unsqueeze(0)  # (1, n, C) or (1, n)
    return split_metrics(out, y, task)


def _is_dropout(mod: nn.Module) -> bool:
    try:
        from droplab.layers import is_dropout
    except ImportError:  # pragma: no cover - layers not installed yet
        is_dropout = None
    if is_dropout is not None and is_dropout(mod):
        return True
    return isinstance(mod, nn.modules.dropout._DropoutNd)


def evaluate(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str = "classification",
    mode: str = "deterministic",
    samples: int = 0,
    generator: torch.Generator | None = None,
    chunk: int = 8192,
) -> dict[str, float]:
    """Metrics of one module on ``(x, y)``.

    ``mode="deterministic"``: the module in eval mode (weight scaling). ``mode="mc"``:
    dropout layers stay stochastic and the class probabilities (regression: outputs) are
    averaged over ``samples`` passes, MC dropout (Gal & Ghahramani 2016); the masks come
    from ``generator`` when given (it seeds torch's RNG inside ``fork_rng``).

    Returns:
        ``acc, nll, ece, loss`` (classification; loss = NLL) or ``rmse, loss`` (MSE).
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if mode not in ("deterministic", "mc"):
        raise ValueError(f"mode must be 'deterministic' or 'mc', got {mode!r}")
    was_training = module.training
    module.eval()
    try:
        if mode == "deterministic":
            out = _predict_module(module, x, task, chunk)
        else:
            if samples < 1:
                raise ValueError(f"mode='mc' needs samples >= 1, got {samples}")
            drops = [m for m in module.modules() if _is_dropout(m)]
            for m in drops:
                m.train()
            dev = x.device
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                if generator is not None:
                    torch.manual_seed(
                        int(
                            torch.randint(
                                0, 2**62, (1,), generator=generator, device=generator.device
                            )
                        )
                    )
                out = sum(_predict_module(module, x, task, chunk) for _ in range(samples))
            out = out / samples
    finally:
        module.train(was_training)
    r = split_metrics(out.unsqueeze(0), y, task)
    return {name: float(v[0]) for name, v in r.items()}
