"""The verdict as data on the command line: `results --json`, `--seed` (root seeds) on
run/results/status, and `droplab findings`."""

from __future__ import annotations

import json

import fake_study
import pytest

from droplab import studies
from droplab.cli import main
from droplab.store import Store
from droplab.studies import effect


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _synthetic(path, roots=(0, 1)):
    """effect's quick grid for each root seed, tuned dropout 3 points better than none."""
    with Store(path) as store:
        records = []
        for root in roots:
            for t in effect.STUDY.expand("quick", seed=root):
                c = t.config
                noise = ((t.seed >> 7) % 97) / 97 * 0.01
                err = (
                    0.3
                    + noise
                    + 0.01 * c["config"]
                    - (0.03 if c["arm"] in effect.PLACEMENTS else 0)
                )
                metrics = {
                    "test_error": err,
                    "val_error": err,
                    "val_loss": 1 + err,
                    "test_nll": 1 + err,
                    "capped": 0.0,
                    "best_epoch": 2.0,
                }
                records.append(t.record(status="finished", metrics=metrics, curves={}))
        store.record(records)


def test_results_json_is_the_verdict_as_data(tmp_path, capsys):
    path = tmp_path / "r.db"
    _synthetic(path)
    code, out, err = run_cli(capsys, "results", "effect", "--json", "--store", path)
    assert code == 0, err
    data = json.loads(out)
    assert data["study"] == "effect" and data["preset"] == "quick" and data["answer"]
    primary = [c for c in data["contrasts"] if c["primary"]]
    assert len(primary) == 1
    p = primary[0]
    for key in (
        "name",
        "metric",
        "unit",
        "estimate",
        "ci_low",
        "ci_high",
        "call",
        "margin",
        "n_seeds",
        "root_seeds",
    ):
        assert key in p
    assert p["call"] == "lowers" and p["n_seeds"] == 6 and p["root_seeds"] == [0, 1]

    # each root seed alone is a replication of the primary contrast
    assert [r["root_seeds"] for r in data["replications"]] == [[0], [1]]
    assert [r["call"] for r in data["replications"]] == ["lowers", "lowers"]
    assert data["agreement"] == "agree"

    code, out, _ = run_cli(capsys, "results", "effect", "--json", "--seed", 1, "--store", path)
    assert "replications" not in json.loads(out)
    p = next(c for c in json.loads(out)["contrasts"] if c["primary"])
    assert p["n_seeds"] == 3 and p["root_seeds"] == [1]

    code, out, err = run_cli(capsys, "results", "effect", "--seed", 7, "--store", path)
    assert code == 2 and "root seed 7" in err and "Traceback" not in err
    assert "`droplab run effect --seed 7` first" in err


def test_status_names_the_root_seeds(tmp_path, capsys):
    path = tmp_path / "r.db"
    _synthetic(path, roots=(0, 3))
    code, out, _ = run_cli(capsys, "status", "--store", path)
    assert code == 0 and "effect (quick): 0, 3" in out


def test_findings_command_writes_markdown(tmp_path, capsys):
    path = tmp_path / "r.db"
    _synthetic(path)
    target = tmp_path / "findings.md"
    code, _, err = run_cli(capsys, "findings", "--store", path, "--out", target)
    assert code == 0, err
    text = target.read_text()
    assert "tuned dropout lowers test error" in text and "droplab findings" in text
    assert "Replications of the primary contrast** (2 root seeds: agree" in text
    assert "| 1 | 3 | " in text  # root seed 1: 3 replicates


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_bad_root_seed_is_one_line(tmp_path, capsys, value):
    code, _, err = run_cli(capsys, "run", "effect", "--seed", value, "--store", tmp_path / "r.db")
    assert code == 2 and "--seed" in err and "int >= 0" in err and "Traceback" not in err


def test_a_study_off_the_protocol_gets_derived_seeds(monkeypatch):
    monkeypatch.setitem(studies.REGISTRY, "fake", fake_study.STUDY)
    base = fake_study.STUDY.expand("quick")
    other = fake_study.STUDY.expand("quick", seed=2)
    assert [t.config for t in base] == [
        {k: v for k, v in t.config.items() if k != "root_seed"} for t in other
    ]
    assert {t.config["root_seed"] for t in other} == {2}
    assert not {t.seed for t in base} & {t.seed for t in other}
