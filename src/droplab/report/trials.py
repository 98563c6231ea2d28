"""What a study's rows in the store say before any analysis: which preset is reported, the
failed trials (one line each), which code version and thread count trained the finished
ones, and their root seeds.

The report lists failed trials from these rows alone (``Findings.failed`` is for the
command line), so each failed trial appears exactly once.
"""

from __future__ import annotations

import pandas as pd

from droplab.report.tables import fmt_value, present

__all__ = [
    "DONE_STATUSES",
    "FAILED_STATUSES",
    "describe_failed",
    "one_preset",
    "provenance",
    "root_seeds",
    "seeds_text",
    "status_column",
]

#: Store statuses of a trial whose results are in the store (passed to ``analyze``).
DONE_STATUSES = frozenset({"finished"})
#: Store statuses of a trial that ran and failed (listed in the report, never hidden).
FAILED_STATUSES = frozenset({"failed"})
# Largest first: the preset reported when the store holds several (droplab.studies.PRESETS).
PRESET_ORDER = ("full", "standard", "quick")

ERROR_COLUMNS = ("error", "message", "exception", "traceback")
# Store columns that are not a trial's config (for failed rows metrics are all NaN, so
# what is left and present is the config).
_NOT_CONFIG = frozenset(
    {"hash", "study", "preset", "seed", "status", "attempts", "seconds", "started_at"}
    | {"finished_at", "host", "backend", "device", "droplab_version", "torch_version"}
    | {"python_version", "code_version", "threads", "curves", *ERROR_COLUMNS}
)


def status_column(frame: pd.DataFrame) -> pd.Series:
    """Each row's status, stripped and lower case ("finished" when there is no column)."""
    if "status" not in frame.columns:
        # No status column: a store that keeps only finished trials.
        return pd.Series(["finished"] * len(frame), index=frame.index, dtype=object)
    return frame["status"].astype(str).str.strip().str.lower()


def one_preset(frame: pd.DataFrame, preset: str | None) -> tuple[pd.DataFrame, str, list[str]]:
    """The rows of ``preset``, or of the largest preset with finished trials (full >
    standard > quick, then others by name); with no finished trials anywhere, all rows.
    Returns (rows, chosen preset or "", the other presets in the store)."""
    if "preset" not in frame.columns:
        return frame, preset or "", []
    presets = [str(p) for p in pd.unique(frame["preset"].dropna())]
    if preset is None:
        finished = set(frame.loc[status_column(frame).isin(DONE_STATUSES), "preset"].astype(str))
        order = [p for p in PRESET_ORDER if p in finished] + sorted(finished - set(PRESET_ORDER))
        if not order:
            return frame, "", sorted(presets)
        preset = order[0]
    rows = frame[frame["preset"].astype(str) == preset]
    return rows, preset, sorted(p for p in presets if p != preset)


def describe_failed(row: pd.Series) -> str:
    """``"<config> seed S (trial abc123…): <last line of the error>"``."""
    config = [
        f"{k}={fmt_value(row[k])}" for k in row.index if k not in _NOT_CONFIG and present(row[k])
    ]
    text = " ".join(config[:10]) + (" …" if len(config) > 10 else "")
    if "seed" in row.index and present(row["seed"]):
        text += f" seed {fmt_value(row['seed'])}"
    if "hash" in row.index and present(row["hash"]):
        text += f" (trial {str(row['hash'])[:10]})"
    text = text.strip() or f"row {row.name}"
    for col in ERROR_COLUMNS:
        if col in row.index and present(row[col]) and str(row[col]).strip():
            lines = [ln for ln in str(row[col]).strip().splitlines() if ln.strip()]
            return f"{text}: {lines[-1].strip()[:300]}"
    return f"{text}: no error text stored"


def _value_counts(rows: pd.DataFrame, column: str) -> list[tuple[str, int]]:
    """(value as text, number of rows) of ``column``, most common first; a missing column
    or value (trials stored before the store recorded it) counts as "not recorded"."""
    if column in rows.columns:
        values = [fmt_value(v) if present(v) else "not recorded" for v in rows[column]]
    else:
        values = ["not recorded"] * len(rows)
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def provenance(done: pd.DataFrame) -> tuple[str, str]:
    """(line, warning) about what trained the finished trials ``done``: the code version
    (git commit) and torch thread count. Both are needed to reproduce the numbers digit for
    digit (docs/findings.md). The warning is "" unless the trials mix several of either
    (or mix recorded and unrecorded ones)."""
    if len(done) == 0:
        return "", ""
    parts, mixed = [], []
    for column, one, unknown, many in (
        ("code_version", "code {}", "code version not recorded", "code versions"),
        ("threads", "{} torch thread", "thread count not recorded", "torch thread counts"),
    ):
        counts = _value_counts(done, column)
        if len(counts) == 1:
            value = counts[0][0]
            text = one.format(value) + ("" if value == "1" else "s") * (column == "threads")
            parts.append(unknown if value == "not recorded" else text)
        else:
            listed = ", ".join(f"{v} ({n} trial{'s' * (n != 1)})" for v, n in counts)
            parts.append(f"{many} {listed}")
            mixed.append(f"{len(counts)} {many.removeprefix('torch ')}")
    line = "Provenance: " + "; ".join(parts) + "."
    warning = ""
    if mixed:
        warning = (
            f"Mixed provenance: the finished trials come from {' and '.join(mixed)}, so these "
            "numbers are not reproducible digit for digit from one checkout and one thread "
            "count; re-run the study into a fresh store to get a single-provenance result."
        )
    return line, warning


def root_seeds(done: pd.DataFrame) -> list[int]:
    """The root seeds (``droplab run --seed`` values) of the finished trials ``done``,
    sorted: the ``root_seed`` config column, where a trial has none root seed 0 (a study
    run without ``--seed``, or stored before the option existed)."""
    if done.empty:
        return []
    if "root_seed" not in done.columns:
        return [0]
    return sorted({int(s) if present(s) else 0 for s in done["root_seed"]})


def root_rows(frame: pd.DataFrame, seed: int | None) -> pd.DataFrame:
    """The rows of root seed ``seed`` (a trial without a ``root_seed`` is root seed 0);
    every row for None."""
    if seed is None or frame.empty:
        return frame
    roots = frame["root_seed"].fillna(0) if "root_seed" in frame.columns else 0
    return frame[roots == seed].reset_index(drop=True)


def seeds_text(seeds: list[int]) -> str:
    """``[0, 1, 2, 3, 7]`` -> ``"0–3, 7"``; ``[]`` -> ``"none"``."""
    if not seeds:
        return "none"
    runs: list[list[int]] = []
    for s in sorted(set(seeds)):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(
        str(a) if a == b else (f"{a}, {b}" if b == a + 1 else f"{a}–{b}") for a, b in runs
    )
