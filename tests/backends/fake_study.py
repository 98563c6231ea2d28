"""A tiny deterministic study for the backend and CLI tests (no torch training).

Importable as ``fake_study`` (its folder is put on sys.path by the tests' conftest), so
spawned workers, Ray workers and ``droplab`` subprocesses (``DROPLAB_STUDIES=fake_study``)
can all import it.

Environment knobs (read inside ``run_group``, so they reach worker processes):
    FAKE_STUDY_SLEEP=seconds   sleep per group (to kill a run in the middle)
    FAKE_STUDY_FAIL=x          raise in the group with config x
    FAKE_STUDY_CONTROL=dir     if dir/exit holds x: kill the worker process (os._exit) in
                               the group with config x. A file, not a variable: forkserver
                               workers see the environment of the server's start only.
    FAKE_STUDY_LOG=path        append one line per trained trial (counts training work)
"""

from __future__ import annotations

import os
import time

import pandas as pd

from droplab import rng
from droplab.findings import Findings
from droplab.studies import Study, Trial
from droplab.studies.stats import fmt_ci, paired_ci

SEEDS = {"quick": 3, "standard": 4, "full": 6}


def trials(preset: str) -> list[Trial]:
    return [
        Trial("fake", {"x": x, "arm": arm}, seed, preset)
        for x in (1, 2, 3)
        for seed in range(SEEDS[preset])
        for arm in ("a", "b")
    ]


def group_key(trial: Trial):
    return (trial.preset, trial.config["x"])  # both arms and all seeds of x together


def run_group(trials: list[Trial], device: str) -> list[dict]:
    x = trials[0].config["x"]
    time.sleep(float(os.environ.get("FAKE_STUDY_SLEEP", "0")))
    if os.environ.get("FAKE_STUDY_FAIL") == str(x):
        raise RuntimeError(f"fake failure in group x={x}")
    control = os.environ.get("FAKE_STUDY_CONTROL")
    exit_file = os.path.join(control, "exit") if control else None
    if exit_file and os.path.exists(exit_file) and open(exit_file).read() == str(x):
        os._exit(3)
    log = os.environ.get("FAKE_STUDY_LOG")
    if log:
        with open(log, "a") as f:
            f.writelines(f"{t.hash}\n" for t in trials)
    out = []
    for t in trials:
        g = rng.numpy_rng(t.seed, "fake", x)  # shared by both arms of a seed: paired
        base = 0.3 / x + 0.01 * g.standard_normal()
        effect = -0.05 if t.config["arm"] == "b" else 0.0
        noise = 0.002 * rng.numpy_rng(t.seed, "fake", x, t.config["arm"]).standard_normal()
        err = base + effect + noise
        out.append({"metrics": {"test_error": err}, "curves": {"val_error": [err + 0.1, err]}})
    return out


def analyze(frame: pd.DataFrame) -> Findings:
    done = frame[frame["status"] == "finished"]
    rows = []
    for x, cell in done.groupby("x"):
        a = cell[cell["arm"] == "a"].set_index("seed")["test_error"]
        b = cell[cell["arm"] == "b"].set_index("seed")["test_error"]
        seeds = sorted(set(a.index) & set(b.index))
        d, lo, hi = paired_ci(b[seeds].to_numpy(), a[seeds].to_numpy())
        rows.append(
            {
                "x": x,
                "n_seeds": len(seeds),
                "diff": round(d, 6),
                "lo": round(lo, 6),
                "hi": round(hi, 6),
            }
        )
    table = pd.DataFrame(rows)
    d, lo, hi = (table.iloc[0][k] for k in ("diff", "lo", "hi"))
    word = "lowers" if hi < 0 else ("raises" if lo > 0 else "does not significantly change")
    return Findings(
        study="fake",
        question="Does arm b beat arm a?",
        verdict=f"arm b {word} the error at x=1 by {fmt_ci(d, lo, hi, scale=100)} points",
        table=table,
    )


STUDY = Study(
    name="fake",
    question="Does arm b beat arm a?",
    trials=trials,
    run_group=run_group,
    analyze=analyze,
    group_key=group_key,
)
