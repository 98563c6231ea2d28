"""Bad input to the ``droplab`` command: one line on stderr, exit code 2, no traceback, and
nothing written (the store is not even created). A user model that outputs NaN: its trials
fail with a clear error, ``droplab status`` counts them, the study's output names them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .harness import one_error_line

USER_CODE = """
import numpy as np
import torch
from torch import nn

from droplab import data

raise_on_import = False
NOT_CALLABLE = 3


def load(seed):
    g = np.random.default_rng(7)
    centers = g.normal(size=(3, 5)) * 2.0

    def sample(n):
        y = np.arange(n) % 3
        return (centers[y] + g.normal(size=(n, 5))).astype(np.float32), y

    x_pool, y_pool = sample(120)
    x_test, y_test = sample(60)
    return data.from_arrays(
        "blobs", "classification", x_pool, y_pool, x_test, y_test, seed=seed, n_val=30,
        n_classes=3,
    )


def build(input_shape, n_outputs, *, input_rate, hidden_rate):
    return nn.Sequential(nn.Dropout(input_rate), nn.Linear(input_shape[0], n_outputs))


class NaNNet(nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.lin = nn.Linear(d, k)

    def forward(self, x):
        return self.lin(x) * float("nan")  # (B, k), every logit NaN


def build_nan(input_shape, n_outputs, *, input_rate, hidden_rate):
    return NaNNet(input_shape[0], n_outputs)


def build_wrong_shape(input_shape, n_outputs, *, input_rate, hidden_rate):
    return nn.Linear(input_shape[0], n_outputs + 2)


def build_not_module(input_shape, n_outputs, *, input_rate, hidden_rate):
    return "a model"


def build_no_keywords(input_shape, n_outputs):
    return nn.Linear(input_shape[0], n_outputs)


def build_raises(input_shape, n_outputs, *, input_rate, hidden_rate):
    raise RuntimeError("CUDA driver too old")


def load_dict(seed):
    return {"x": torch.zeros(3, 5)}


def load_raises(seed):
    raise FileNotFoundError("/data/blobs.npz")


def load_empty(seed):
    d = load(seed)
    d.x_train, d.y_train = d.x_train[:0], d.y_train[:0]
    return d
"""


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    (folder / "usercode.py").write_text(textwrap.dedent(USER_CODE))
    (folder / "broken.py").write_text("import numpy\nraise ImportError('needs scipy 9')\n")
    return folder


def cases(user: Path) -> list[tuple[list[str], str]]:
    """(arguments after `droplab`, a part of the expected one-line message)."""
    f = user / "usercode.py"
    good_data = ["--data", f"{f}:load"]
    good_model = ["--model", f"{f}:build"]
    return [
        (["run", "nosuchstudy"], "unknown study 'nosuchstudy'"),
        (["run", "rel", "--preset", "huge"], "invalid choice: 'huge'"),
        (["run", "rel", "--workers", "-1"], "--workers must be >= 1, got -1"),
        (["run", "rel", "--workers", "0"], "--workers must be >= 1, got 0"),
        (["run", "rel", "--workers", "two"], "invalid int value: 'two'"),
        (["run", "rel", "--backend", "gpu"], "invalid choice: 'gpu'"),
        (["run", "rel", "--device", "tpu"], "--device must be cpu, cuda or cuda:N, got 'tpu'"),
        (["run", "rel", "--address", "10.0.0.1:6379"], "--address is for the ray backend"),
        (["run", "--model", f"{f}:build"], "--model/--data need the study names"),
        (["run", "rel", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["results", "nosuchstudy"], "unknown study 'nosuchstudy'"),
        (
            ["run", "effect", "--model", "no_such_pkg_xyz:build"],
            "no module named 'no_such_pkg_xyz'",
        ),
        (["run", "effect", "--model", "build"], "--model must look like"),
        (["run", "effect", "--model", f"{f}:missing"], "has no attribute 'missing'"),
        (["run", "effect", "--model", f"{f}:NOT_CALLABLE"], "not a function"),
        (["run", "effect", "--model", f"{user}/nofile.py:build"], "does not exist"),
        (["run", "effect", "--model", f"{user}/broken.py:build"], "needs scipy 9"),
        (["run", "effect", *good_data, "--model", f"{f}:build_wrong_shape"], "must have shape"),
        (["run", "effect", *good_data, "--model", f"{f}:build_not_module"], "torch.nn.Module"),
        (["run", "effect", *good_data, "--model", f"{f}:build_no_keywords"], "raised TypeError"),
        (["run", "effect", *good_data, "--model", f"{f}:build_raises"], "CUDA driver too old"),
        (["run", "effect", *good_model, "--data", f"{f}:load_dict"], "droplab.data.Dataset"),
        (["run", "effect", *good_model, "--data", f"{f}:load_raises"], "/data/blobs.npz"),
        (["run", "effect", *good_model, "--data", f"{f}:load_empty"], "non-zero number of rows"),
    ]


def test_bad_command_lines_are_one_line_errors_with_exit_2_and_write_nothing(
    zygote, user, tmp_path
):
    tried = 0
    for argv, message in cases(user):
        db = tmp_path / f"case{tried}" / "r.db"
        store = ["--store", str(db)] if argv[0] in ("run", "results") else []
        result = zygote.run([*argv, *store])
        assert result.code == 2, (argv, result.code, result.err)
        line = one_error_line(result)
        assert message in line, (argv, line)
        assert not db.exists(), f"{argv}: a refused command created the store"
        tried += 1
    assert tried == 25


def test_user_model_that_outputs_nan_fails_its_trials_clearly(zygote, user, tmp_path):
    f = user / "usercode.py"
    db = tmp_path / "r.db"
    argv = ["run", "effect", "--preset", "quick", "--store", db, "--no-report"]
    argv += ["--model", f"{f}:build_nan", "--data", f"{f}:load"]
    run = zygote.run(argv)
    assert run.code == 1, (run.code, run.err)  # trials failed; not a crash
    assert "Traceback" not in run.err
    assert "trials failed (see `droplab status`)" in run.err
    assert "effect: no finished trials" in run.out and "the loss is not finite" in run.out

    status = zygote.run(["status", "--store", db])
    row = next(ln.split() for ln in status.out.splitlines() if ln.startswith("effect"))
    finished, failed, total = int(row[2]), int(row[3]), int(row[6])
    assert finished == 0 and failed == total > 0

    results = zygote.run(["results", "effect", "--store", db])
    assert results.code == 2
    line = one_error_line(results)
    assert f"{total} trials failed" in line and "FloatingPointError: the loss is not finite" in line
    assert "training diverged or the model outputs NaN/inf" in line
