"""Helpers of the reliability tests: the command-process starter and store checks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # `import rel_study` here, in Ray workers and in runs

REPO = HERE.parents[1]
KNOBS = ("REL_SLEEP", "REL_FAIL", "REL_LOG", "REL_RAY_KILL", "REL_XS")


@dataclass
class Result:
    code: int
    out: str
    err: str


class Zygote:
    """Starts ``droplab`` command processes (``droplab.cli.main`` in a child forked from a
    pre-imported parent, see zygote.py): ``start`` returns the child's pid, ``wait`` its
    exit code and output; ``run`` does both."""

    def __init__(self, tmp: Path):
        env = dict(os.environ)
        env["DROPLAB_STUDIES"] = "rel_study"
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).strip(
            os.pathsep
        )
        env.setdefault("OMP_NUM_THREADS", "1")
        for k in KNOBS:
            env.pop(k, None)
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp,
        )
        self._lock = threading.Lock()
        self._n = 0
        self._files: dict[int, tuple[Path, Path]] = {}
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def _ask(self, req: dict) -> dict:
        with self._lock:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote died")
        return json.loads(line)

    def start(
        self, argv, *, env=None, fsize=None, kill_at_write=None, kill_phase="before", uid=None
    ):
        self._n += 1
        out, err = self.tmp / f"out{self._n}.txt", self.tmp / f"err{self._n}.txt"
        env = {k: None for k in KNOBS} | dict(env or {})
        pid = self._ask(
            {
                "op": "start",
                "argv": [str(a) for a in argv],
                "env": env,
                "out": str(out),
                "err": str(err),
                "fsize": fsize,
                "kill_at_write": kill_at_write,
                "kill_phase": kill_phase,
                "uid": uid,
            }
        )["pid"]
        self._files[pid] = (out, err)
        return pid

    def wait(self, pid: int) -> Result:
        code = self._ask({"op": "wait", "pid": pid})["code"]
        out, err = self._files.pop(pid)
        return Result(code, out.read_text(), err.read_text())

    def run(self, argv, **kw) -> Result:
        return self.wait(self.start(argv, **kw))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def one_error_line(result: Result) -> str:
    """The user-facing error: exactly one line on stderr, starting 'droplab: error:'."""
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert "Traceback" not in result.err, result.err
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("droplab: error: "), lines[0]
    return lines[0]
