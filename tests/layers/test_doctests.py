"""The Examples in the docstrings of the layer family run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "droplab.functional",
    "droplab.functional.bernoulli",
    "droplab.functional.gaussian",
    "droplab.functional.alpha",
    "droplab.functional.structured",
    "droplab.functional.paths",
    "droplab._validate",
    "droplab.layers.bernoulli",
    "droplab.layers.gaussian",
    "droplab.layers.structured",
    "droplab.layers.droppath",
    "droplab.layers.dropconnect",
    "droplab.layers.mc",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
