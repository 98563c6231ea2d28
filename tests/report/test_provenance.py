"""The report says which code version(s) and torch thread count(s) trained each study, and
warns plainly when one study's finished trials mix several."""

from __future__ import annotations

import hashlib
import sqlite3

import pandas as pd

from droplab.findings import Findings
from droplab.report import render
from droplab.store import Store

from .conftest import FakeStudy, _record

WARNING = "not reproducible digit for digit"


def analyze_plain(frame: pd.DataFrame) -> Findings:
    """A figure-free analysis (rendering stays fast): the mean test error."""
    done = frame[frame["status"] == "finished"]
    mean = float(done["test_error"].mean())
    table = pd.DataFrame({"mean": [mean]})
    return Findings(study="p", question="q?", verdict=f"mean error {mean:.2f}", table=table)


STUDY = FakeStudy("p", "Does provenance show?", analyze_plain)


def write(path, provenance: list[tuple[str | None, int | None]]) -> None:
    """One finished trial per (code_version, threads), seeds 0, 1, ...; plus one failed
    trial from a third code version (failed trials are not part of the numbers)."""
    records = [
        _record(
            "p",
            {"rate": 0.5},
            seed,
            status="finished",
            metrics={"test_error": 10.0 + seed},
            code_version=code,
            threads=threads,
        )
        for seed, (code, threads) in enumerate(provenance)
    ]
    records.append(
        _record("p", {"rate": 0.9}, 0, status="failed", error="boom", code_version="ffffffffffff")
    )
    with Store(path) as store:
        store.record(records)


def texts(tmp_path, provenance) -> tuple[str, str]:
    write(tmp_path / "r.db", provenance)
    index = render(tmp_path / "r.db", tmp_path / "out", [STUDY])
    page = index.read_text(encoding="utf-8")
    assert "mean error" in page  # the section is a normal, analyzed one
    return page, (tmp_path / "out" / "report.md").read_text()


def test_one_code_version_and_thread_count_is_stated_without_a_warning(tmp_path):
    page, md = texts(tmp_path, [("7554208c1f0e", 2)] * 3)
    for text in (page, md):
        assert "Provenance: code 7554208c1f0e; 2 torch threads." in text
        assert WARNING not in text and "Mixed provenance" not in text
        assert "ffffffffffff" not in text  # the failed trial's version is not in the numbers


def test_two_code_versions_are_warned_about(tmp_path):
    page, md = texts(tmp_path, [("7554208c1f0e", 1), ("7554208c1f0e", 1), ("e81f21d0aa00", 1)])
    for text in (page, md):
        assert "code versions 7554208c1f0e (2 trials), e81f21d0aa00 (1 trial)" in text
        assert "; 1 torch thread." in text
        assert "from 2 code versions, so these numbers are " + WARNING in text
    assert '<div class="notes" role="note">' in page


def test_two_thread_counts_are_warned_about(tmp_path):
    page, _ = texts(tmp_path, [("abc", 1), ("abc", 2)])
    assert "torch thread counts 1 (1 trial), 2 (1 trial)" in page
    assert "from 2 thread counts, so these numbers are " + WARNING in page


def test_unrecorded_provenance_is_said_and_mixing_it_warns(tmp_path):
    page, _ = texts(tmp_path, [(None, None), (None, None)])
    assert "code version not recorded; thread count not recorded" in page
    assert WARNING not in page
    page, _ = texts(tmp_path / "b", [(None, None), ("abc", 1)])
    assert "code versions abc (1 trial), not recorded (1 trial)" in page
    assert "from 2 code versions and 2 thread counts" in page


def test_a_v1_store_renders_read_only_and_stays_version_1(tmp_path):
    path = tmp_path / "v1.db"
    write(path, [("abc", 1)])
    con = sqlite3.connect(path)  # back to a version-1 file: drop the two v2 columns
    con.execute("ALTER TABLE trials DROP COLUMN code_version")
    con.execute("ALTER TABLE trials DROP COLUMN threads")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    page = render(path, tmp_path / "out", [STUDY]).read_text(encoding="utf-8")
    assert "mean error 10.00" in page
    assert "code version not recorded; thread count not recorded" in page
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
