"""`droplab run effect --model FILE:build --data FILE:load`: the user's own model and data."""

from __future__ import annotations

from pathlib import Path

import pytest

from droplab.cli import main
from droplab.store import Store

USER = Path(__file__).with_name("user_model.py")


def test_effect_on_the_users_model_and_data(tmp_path, capsys):
    store = tmp_path / "r.db"
    argv = ["run", "effect", "--preset", "quick", "--store", str(store), "--no-report"]
    argv += ["--model", f"{USER}:build", "--data", f"{USER}:load"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "effect: On your data" in out
    with Store(store, readonly=True) as s:
        frame = s.frame("effect")
    # 3 replicates x (none 3 + input, hidden, both, note, anchor, plain 1 each)
    assert len(frame) == 27 and set(frame["status"]) == {"finished"}
    assert set(frame["model"]) == {f"user:{USER.resolve()}:build"}
    assert set(frame["n_train"]) == {200}  # the whole train split of 240 - 40 val
    assert frame["test_error"].between(0, 1).all()


@pytest.mark.parametrize(
    "option, spec, message",
    [
        (
            "--model",
            "{user}:wrong_output",
            "output for a batch of 3 must have shape (3, 3), got (3, 4)",
        ),
        ("--model", "{user}:not_a_module", "must return a torch.nn.Module, got str"),
        (
            "--model",
            "{user}:no_keywords",
            "build(input_shape, n_outputs, *, input_rate, hidden_rate) raised",
        ),
        ("--model", "{user}:missing", "has no attribute 'missing'"),
        ("--model", "{user}:NOT_CALLABLE", "NOT_CALLABLE is a int, not a function"),
        ("--model", "no_such_module_xyz:build", "no module named 'no_such_module_xyz'"),
        ("--model", "build", "must look like 'package.module:function' or 'file.py:function'"),
        ("--data", "{user}:load_dict", "must return a droplab.data.Dataset, got dict"),
        ("--data", "{dir}/nowhere.py:load", "does not exist"),
    ],
)
def test_bad_user_code_is_a_one_line_error(tmp_path, capsys, option, spec, message):
    spec = spec.format(user=USER, dir=tmp_path)
    argv = ["run", "effect", "--preset", "quick", "--store", str(tmp_path / "r.db")]
    argv += [option, spec]
    if option == "--model":
        argv += ["--data", f"{USER}:load"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("droplab: error: ") and err.count("\n") == 1
    assert message in err, err
    assert not (tmp_path / "r.db").exists()  # nothing was written before the check
