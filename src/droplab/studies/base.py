"""What a study is: :class:`Study` (the declarative spec) and :class:`Trial` (one config +
one seed; defined with its hash in :mod:`droplab.store.identity` and re-exported here),
plus the helpers that load a user's own model factory and dataset.

A study module reads like the methods section of a paper and ends with::

    STUDY = Study(
        name="effect",
        question="How much exactly does drop-out help? ...",   # quoted from the note
        trials=trials,          # (preset) -> list[Trial]
        run_group=run_group,    # (trials, device) -> [{"metrics": {...}, "curves": {...}}, ...]
        analyze=analyze,        # (frame) -> Findings
    )

Trials that share a :attr:`Study.group_key` are trained together by one ``run_group`` call
(one batched ``droplab.train.fit``); the backend stores one row per trial.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from droplab import rng
from droplab.findings import Findings
from droplab.store.identity import Trial, config_key

__all__ = [
    "PRESETS",
    "Study",
    "Trial",
    "check_results",
    "default_group_key",
    "load_object",
    "load_user_data",
    "load_user_model",
    "select_preset",
]

#: Presets, smallest first: ``quick`` for tests and CI (well under 2 min per study on 2
#: cores), ``standard`` for ``make run`` (all studies together within 20 min on 2 cores),
#: ``full`` for a cluster or a GPU.
PRESETS = ("quick", "standard", "full")


def default_group_key(trial: Trial) -> Hashable:
    """Trials that differ only in seed form one group (trained as members of one fit)."""
    return (trial.preset, config_key(trial.config))


@dataclass(frozen=True)
class Study:
    """A declarative study: the question, the grid, the training, the analysis.

    Attributes:
        name: registry name (``droplab run NAME``).
        question: the question it answers, quoted from the research note.
        trials: ``trials(preset) -> list[Trial]``; when ``custom`` is True also
            ``trials(preset, model=SPEC, data=SPEC)`` for the user's model and data.
        run_group: ``run_group(trials, device) -> list[dict]``: trains the trials of one
            group (same :attr:`group_key`) and returns, in the same order, one dict per
            trial with ``"metrics"`` (name -> float) and optionally ``"curves"``
            (name -> list of floats per evaluated epoch). Must be a module-level function
            (it is pickled by reference to run in worker processes and Ray tasks).
        analyze: ``analyze(frame) -> Findings`` from ``Store.frame(name)`` rows of one
            preset (see :meth:`findings`); verdict words and numbers come from the data.
        group_key: ``group_key(trial) -> hashable``; default: all but the seed.
        description: one paragraph on the method (data, model, training, seeds).
        custom: whether ``trials`` accepts ``model=``/``data=`` (``--model``/``--data``).
        seeded: whether ``trials`` accepts ``seed=`` (the root seed, ``--seed``) and
            derives every trial seed from it (the protocol studies). For other studies a
            root seed other than 0 is applied by :meth:`expand`: each trial's seed becomes
            ``derive(root, "trial", seed)`` and its config gets ``root_seed``.
    """

    name: str
    question: str
    trials: Callable[..., list[Trial]]
    run_group: Callable[[list[Trial], str], list[dict[str, Any]]]
    analyze: Callable[[pd.DataFrame], Findings]
    group_key: Callable[[Trial], Hashable] = default_group_key
    description: str = ""
    custom: bool = False
    seeded: bool = False

    def expand(
        self,
        preset: str,
        *,
        model: str | None = None,
        data: str | None = None,
        seed: int = 0,
    ) -> list[Trial]:
        """The trials of ``preset`` for root seed ``seed`` (validated), in a deterministic
        order, without duplicates."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed (the root seed) must be an int >= 0, got {seed!r}")
        if (model or data) and not self.custom:
            raise ValueError(
                f"study {self.name!r} does not take --model/--data (it needs its built-in "
                "models); studies that do are marked 'custom' in `droplab list`"
            )
        kwargs: dict[str, Any] = {
            k: v for k, v in (("model", model), ("data", data)) if v is not None
        }
        if self.seeded:
            kwargs["seed"] = seed
        trials = list(self.trials(preset, **kwargs))
        if seed and not self.seeded:
            trials = [
                Trial(
                    t.study,
                    {**t.config, "root_seed": seed},
                    rng.derive(seed, "trial", t.seed),
                    t.preset,
                )
                for t in trials
            ]
        seen: dict[str, Trial] = {}
        for t in trials:
            if not isinstance(t, Trial):
                raise TypeError(f"{self.name}.trials() must return Trials, got {t!r}")
            if t.study != self.name or t.preset != preset:
                raise ValueError(
                    f"{self.name}.trials({preset!r}) returned a trial of study {t.study!r}, "
                    f"preset {t.preset!r}"
                )
            seen.setdefault(t.hash, t)
        return list(seen.values())

    def groups(self, trials: Sequence[Trial]) -> list[list[Trial]]:
        """Split ``trials`` into groups by :attr:`group_key`, keeping first-seen order."""
        out: dict[Hashable, list[Trial]] = {}
        for t in trials:
            out.setdefault(self.group_key(t), []).append(t)
        return list(out.values())

    def findings(self, frame: pd.DataFrame, preset: str | None = None) -> Findings:
        """``analyze`` on the rows of one preset: ``preset``, or the largest one with
        finished trials (full > standard > quick)."""
        return self.analyze(select_preset(frame, preset))


def select_preset(frame: pd.DataFrame, preset: str | None = None) -> pd.DataFrame:
    """Rows of ``frame`` of ``preset``, or of the largest preset that has finished trials."""
    if preset is None:
        finished = set(frame.loc[frame["status"] == "finished", "preset"]) if len(frame) else set()
        order = [p for p in reversed(PRESETS) if p in finished] + sorted(finished - set(PRESETS))
        if not order:
            return frame.iloc[0:0]
        preset = order[0]
    return frame[frame["preset"] == preset].reset_index(drop=True)


def check_results(study: str, trials: Sequence[Trial], results: Any) -> list[dict[str, Any]]:
    """Validate what ``run_group`` returned: one dict per trial with float metrics."""
    if not isinstance(results, (list, tuple)) or len(results) != len(trials):
        got = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
        raise TypeError(
            f"{study}.run_group must return a list with one dict per trial "
            f"({len(trials)}), got {got}"
        )
    out = []
    for r in results:
        if not isinstance(r, Mapping) or not isinstance(r.get("metrics"), Mapping):
            raise TypeError(f"{study}.run_group results need a 'metrics' dict, got {r!r}")
        metrics = {}
        for k, v in r["metrics"].items():
            try:
                metrics[str(k)] = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"{study}: metric {k!r} must be a number, got {v!r}") from None
        curves = {str(k): [float(x) for x in v] for k, v in dict(r.get("curves") or {}).items()}
        out.append({"metrics": metrics, "curves": curves})
    return out


# -- the user's own model and data -------------------------------------------------------


def load_object(spec: str, what: str) -> Callable[..., Any]:
    """Import ``"package.module:attr"`` or ``"path/to/file.py:attr"`` and return the callable.

    Args:
        spec: the reference.
        what: ``"--model"`` or ``"--data"``, for the error message.
    """
    if (
        not isinstance(spec, str)
        or spec.count(":") != 1
        or spec.startswith(":")
        or spec.endswith(":")
    ):
        raise ValueError(
            f"{what} must look like 'package.module:function' or 'file.py:function', got {spec!r}"
        )
    module_name, attr = spec.split(":")
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ValueError(f"{what} {spec!r}: file {path} does not exist")
        name = "droplab_user_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))
        module = sys.modules.get(name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise ValueError(f"{what} {spec!r}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[name]
                raise ValueError(f"{what} {spec!r}: importing {path} failed: {e!r}") from None
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # like `python -m`: the current folder imports
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            raise ValueError(f"{what} {spec!r}: no module named {e.name!r}") from None
        except Exception as e:
            raise ValueError(f"{what} {spec!r}: importing {module_name} failed: {e!r}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise ValueError(f"{what} {spec!r}: module {module_name} has no attribute {attr!r}")
    if not callable(obj):
        raise TypeError(f"{what} {spec!r}: {attr} is a {type(obj).__name__}, not a function")
    return obj


def load_user_data(spec: str, seed: int) -> Any:
    """Call the user's ``load(seed: int) -> droplab.data.Dataset`` and validate the result."""
    from droplab.data import Dataset

    load = load_object(spec, "--data")
    try:
        data = load(seed)
    except Exception as e:
        raise ValueError(f"--data {spec!r}: load({seed}) raised {e!r}") from None
    if not isinstance(data, Dataset):
        raise TypeError(
            f"--data {spec!r}: load(seed) must return a droplab.data.Dataset, "
            f"got {type(data).__name__}"
        )
    if data.task not in ("classification", "regression"):
        raise ValueError(
            f"--data {spec!r}: task must be 'classification' or 'regression', got {data.task!r}"
        )
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"--data {spec!r}: x_{split} and y_{split} must have the same, non-zero number "
                f"of rows, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if tuple(x.shape[1:]) != tuple(data.input_shape):
            raise ValueError(
                f"--data {spec!r}: x_{split} has shape {tuple(x.shape)}, expected "
                f"(n, *input_shape) with input_shape={tuple(data.input_shape)}"
            )
    return data


def load_user_model(spec: str, data: Any) -> Callable[..., Any]:
    """Load the user's factory ``build(input_shape, n_outputs, *, input_rate, hidden_rate)
    -> torch.nn.Module`` and check it on ``data``: it must build a module whose output for
    a batch of B inputs has shape (B, n_outputs) (or (B,) for regression)."""
    import torch

    build = load_object(spec, "--model")
    try:
        module = build(
            tuple(data.input_shape), int(data.n_outputs), input_rate=0.2, hidden_rate=0.5
        )
    except Exception as e:
        raise ValueError(
            f"--model {spec!r}: build(input_shape, n_outputs, *, input_rate, hidden_rate) "
            f"raised {e!r}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"--model {spec!r}: build(...) must return a torch.nn.Module, got {type(module).__name__}"
        )
    x = data.x_train[:3]  # (3, *input_shape)
    try:
        with torch.no_grad():
            out = module.eval()(x)
    except Exception as e:
        raise ValueError(
            f"--model {spec!r}: the model fails on a batch of shape {tuple(x.shape)}: {e!r}"
        ) from None
    ok = (tuple(out.shape) == (3, data.n_outputs)) or (
        data.task == "regression" and tuple(out.shape) == (3,)
    )
    if not isinstance(out, torch.Tensor) or not ok:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"--model {spec!r}: output for a batch of 3 must have shape (3, {data.n_outputs}), got {shape}"
        )
    return build
