"""Trial identity: the hashes that name every stored trial never change.

A store is resumed by looking its trials up by hash, so a hash that changes (a different
JSON spelling, key order, float repr or field set) silently retrains everything. The
expected values below were computed before the store was split into modules and pin the
exact bytes that go into sha256.
"""

from __future__ import annotations

import ast
import doctest
import pickle
from pathlib import Path

import pytest

import droplab.store
import droplab.store.identity
import droplab.studies.base
from droplab.store import canonical_json, config_hash, config_key
from droplab.store.identity import Trial
from droplab.studies.base import default_group_key

STORE_SOURCES = sorted(Path(droplab.store.__file__).parent.glob("*.py"))

# (study, preset, config, seed) -> sha256 hex, computed with the code of commit 87614c9.
PINNED = [
    (
        ("effect", "quick", {}, 0),
        "6e54b1d9b540cf58825526dff3dcda9f086d3be6ebef70fa73fdae5f24f5c7f1",
    ),
    (
        (
            "rate",
            "standard",
            {"arm": "dropout", "rate": 0.5, "lr": 0.001, "widths": [64, 64], "dataset": "mnist1d"},
            3,
        ),
        "9725fcabda897e7d1e4527b8be0cdcc8de967e02da77e1e8b9771541f85403e0",
    ),
    (
        (
            "explicit",
            "full",
            {
                "weight_decay": 1e-05,
                "max_norm": None,
                "flag": True,
                "nested": {"b": [1, 2.5], "a": "é"},
            },
            123456789,
        ),
        "a20034a082a66808232441ab232c20fbba2c0df9af17a8871fd8913789e032b6",
    ),
    (
        ("gaussian", "quick", {"sigma": 0.30000000000000004, "big": 2**40, "neg": -1.5e-300}, 7),
        "239f253a1712e07d27a6ef4a112780b9b53796c33f26f02b1928b9e7809592e5",
    ),
]


@pytest.mark.parametrize(("identity", "expected"), PINNED)
def test_config_hash_is_pinned(identity, expected):
    assert config_hash(*identity) == expected


@pytest.mark.parametrize(("identity", "expected"), PINNED)
def test_trial_hash_is_the_pinned_config_hash(identity, expected):
    study, preset, config, seed = identity
    assert Trial(study, config, seed, preset).hash == expected


def test_trial_canonicalizes_tuples_before_hashing():
    trial = Trial("slack", {"widths": (32, 16), "rate": 0.2}, 5, "quick")
    assert trial.config == {"rate": 0.2, "widths": [32, 16]}
    assert trial.hash == "1eb0393ab8af7b0162fe03652edfbb1d6c56c745fee97b41a5c366f7419bfbc9"
    assert trial == Trial("slack", {"rate": 0.2, "widths": [32, 16]}, 5, "quick")
    assert default_group_key(trial) == ("quick", '{"rate":0.2,"widths":[32,16]}')


def test_trial_is_one_class_reexported_by_studies():
    assert droplab.studies.base.Trial is Trial
    trial = Trial("s", {"a": [1, 2]}, 3, "quick")
    again = pickle.loads(pickle.dumps(trial))  # how trials reach pool and Ray workers
    assert again == trial and again.hash == trial.hash and type(again) is Trial


def test_identity_docstring_examples():
    result = doctest.testmod(droplab.store.identity)
    assert result.attempted and not result.failed


@pytest.mark.parametrize("path", STORE_SOURCES, ids=lambda p: p.name)
def test_store_imports_only_itself_of_droplab(path):
    """The store sits below the studies: it may import its own modules, never a study (the
    studies import the store's identity module, not the other way round)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    droplab_imports = {m for m in imported if m == "droplab" or m.startswith("droplab.")}
    assert all(m.startswith("droplab.store.") for m in droplab_imports), droplab_imports
    if path.name == "identity.py":
        assert not droplab_imports


def test_config_key_is_canonical_json_without_the_given_keys():
    config = {"rate": 0.5, "lr": 0.1, "arm": "a", "widths": [8, 4]}
    assert config_key(config) == canonical_json(config)
    assert config_key(config, without=("lr", "arm", "absent")) == '{"rate":0.5,"widths":[8,4]}'
    # configs that differ only in the left-out keys share the key, whatever their order
    other = {"widths": [8, 4], "arm": "b", "rate": 0.5, "lr": 0.3}
    assert config_key(other, without=("arm", "lr")) == config_key(config, without=["lr", "arm"])
    assert config_key(config, without=("arm",)) != config_key(other, without=("arm",))
