"""Trial identity: the hashes that name every stored trial never change.

A store is resumed by looking its trials up by hash, so a hash that changes (a different
JSON spelling, key order, float repr or field set) silently retrains everything. The
expected values below were computed before the store was split into modules and pin the
exact bytes that go into sha256.
"""

from __future__ import annotations

import pytest

from droplab.store import config_hash
from droplab.studies.base import Trial, default_group_key

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
