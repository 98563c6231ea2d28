"""A tiny deterministic study for the fault tests (no training: milliseconds per group).

Importable as ``rel_study`` (tests/reliability is put on sys.path by conftest), so
``droplab run`` processes (``DROPLAB_STUDIES=rel_study``) and Ray workers import it.

Grid of the ``quick`` preset: x in 1..12, arm a/b, seeds 0, 1 -> 48 trials in 12 groups
(one group per x: both arms and both seeds), so a sweep has 12 store writes of results.
``REL_XS=n`` makes it x in 1..n (read by ``trials``, in the driver).

Knobs, read inside ``run_group`` (so they reach the process that runs it):
    REL_SLEEP=s          sleep s seconds per group (a sweep long enough to kill it)
    REL_FAIL=3:nan,5:oom raise in group x=3 a FloatingPointError (NaN loss) and in x=5 a
                         MemoryError (out of memory) from inside the trial
    REL_LOG=path         append one line per trained trial (counts training work)
    REL_RAY_KILL=dir     group x=2 writes its pid to dir/pid and sleeps until the test
                         kills its worker process; once dir/killed exists it runs normally

With ``--model pkg.mod:build --data pkg.mod:load`` (``custom``), the trials carry the two
references and ``run_group`` trains the user's model with ``droplab.train.fit``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from droplab import rng
from droplab.findings import Findings
from droplab.studies import Study, Trial

SEEDS = {"quick": 2, "standard": 3, "full": 4}


def trials(preset: str, model: str | None = None, data: str | None = None) -> list[Trial]:
    user = {}
    if model or data:
        from droplab.studies.base import load_user_data, load_user_model

        loaded = load_user_data(data, 0) if data else None
        if model:
            if loaded is None:
                raise ValueError("--model needs --data in the rel study")
            load_user_model(model, loaded)
        user = {"model": model, "data": data}
        xs: tuple[int, ...] = (1,)
    else:
        xs = tuple(range(1, int(os.environ.get("REL_XS", "12")) + 1))
    return [
        Trial("rel", {"x": x, "arm": arm, **user}, seed, preset)
        for x in xs
        for seed in range(SEEDS[preset])
        for arm in ("a", "b")
    ]


def group_key(trial: Trial):
    return (trial.preset, trial.config["x"], trial.config.get("model"))


def _fail(x: int) -> None:
    for item in filter(None, os.environ.get("REL_FAIL", "").split(",")):
        where, kind = item.split(":")
        if int(where) == x:
            if kind == "nan":
                raise FloatingPointError(f"training loss is NaN at epoch 3 (group x={x})")
            raise MemoryError(f"out of memory allocating 12.0 GiB (group x={x})")


def _ray_kill(x: int) -> None:
    folder = os.environ.get("REL_RAY_KILL")
    if not folder or x != 2 or (Path(folder) / "killed").exists():
        return
    (Path(folder) / "pid.tmp").write_text(str(os.getpid()))
    os.replace(Path(folder) / "pid.tmp", Path(folder) / "pid")
    time.sleep(120)  # the test kills this process long before


def _user_group(trials: list[Trial], device: str) -> list[dict]:
    """Train the user's model on the user's data (both from --model/--data), one member
    per trial, with droplab's trainer; metrics at the best-validation epoch."""
    from droplab.studies.base import load_user_data, load_user_model
    from droplab.train import MemberConfig, TrainConfig, fit

    cfg = trials[0].config
    data = load_user_data(cfg["data"], 0)
    build = load_user_model(cfg["model"], data)
    members = [
        MemberConfig(seed=t.seed, input_rate=0.2 if cfg["arm"] == "b" else 0.0) for t in trials
    ]
    result = fit(build, data, members, TrainConfig(epochs=2, batch_size=32), device=device)
    return [{"metrics": m.metrics, "curves": m.curves} for m in result.members]


def run_group(trials: list[Trial], device: str) -> list[dict]:
    if "model" in trials[0].config:
        return _user_group(trials, device)
    x = trials[0].config["x"]
    time.sleep(float(os.environ.get("REL_SLEEP", "0")))
    _fail(x)
    _ray_kill(x)
    log = os.environ.get("REL_LOG")
    if log:
        with open(log, "a") as f:
            f.writelines(f"{t.hash}\n" for t in trials)
    out = []
    for t in trials:
        g = rng.numpy_rng(t.seed, "rel", x, t.config["arm"])
        err = 0.2 / x + (0.03 if t.config["arm"] == "a" else 0.0) + 0.01 * g.standard_normal()
        out.append(
            {
                "metrics": {"test_error": err, "test_nll": 2.0 * err},
                "curves": {"val_error": [err + 0.05 * k for k in (3, 2, 1, 0)]},
            }
        )
    return out


def analyze(frame: pd.DataFrame) -> Findings:
    done = frame[frame["status"] == "finished"]
    table = (
        done.groupby(["x", "arm"])["test_error"].agg(["mean", "count"]).reset_index()
        if len(done)
        else pd.DataFrame(columns=["x", "arm", "mean", "count"])
    )
    failed = frame[frame["status"] == "failed"]
    lines = [
        f"x={r.x} arm={r.arm} seed={r.seed}: {str(r.error).strip().splitlines()[-1]}"
        for r in failed.itertuples()
    ]
    means = done.groupby("arm")["test_error"].mean()
    verdict = (
        f"arm b lowers the mean error by {100 * (means['a'] - means['b']):.1f} points "
        f"over {len(done)} finished trials"
        if {"a", "b"} <= set(means.index)
        else f"{len(done)} finished trials, not enough for a comparison"
    )
    if len(failed):
        verdict += f"; {len(failed)} trials failed"
    return Findings(
        study="rel",
        question="Does the store survive faults?",
        verdict=verdict,
        table=table,
        failed=lines,
    )


STUDY = Study(
    name="rel",
    question="Does the store survive faults?",
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
    custom=True,
)
