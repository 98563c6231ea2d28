"""A pre-imported parent that forks ``droplab`` command processes on request.

Importing torch + droplab costs seconds per process on a loaded 2-core machine; the fault
tests start ~40 ``droplab run`` processes. This script imports ``droplab.cli`` once (and
does no torch computation, so forking is safe), then for each JSON request on stdin forks
a child that runs ``droplab.cli.main(argv)`` exactly as the ``droplab`` console script
does, with its own environment, stdout/stderr files and optional faults:

    {"op": "start", "argv": [...], "env": {...}, "out": path, "err": path,
     "fsize": bytes | null,            # RLIMIT_FSIZE: writes beyond it fail (disk full)
     "kill_at_write": k | null,        # SIGKILL itself in its k-th store transaction,
     "kill_phase": "before" | "after", #   before or after the COMMIT
     "uid": int | null}                # run as this user (a read-only file for root)
        -> {"pid": pid}
    {"op": "wait", "pid": pid} -> {"code": exit code, or -signal number}

An exception escaping ``main`` prints its traceback to the child's stderr (as Python
does) and exits 1, so the tests see it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import traceback


def _child(req: dict) -> int:
    for k, v in req.get("env", {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    if req.get("fsize") is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
    if req.get("uid") is not None:
        os.setgid(req["uid"])
        os.setuid(req["uid"])
    if req.get("kill_at_write"):
        _hook_writes(int(req["kill_at_write"]), req.get("kill_phase", "before"))
    from droplab.cli import main

    try:
        code = main(req["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _hook_writes(k: int, phase: str) -> None:
    """SIGKILL this process inside its k-th store transaction (statements executed,
    COMMIT not yet run) or right after its k-th COMMIT."""
    from droplab.store.sqlite import Store

    original = Store._write
    count = [0]

    @contextlib.contextmanager
    def hooked(self):
        with original(self) as con:
            yield con
            count[0] += 1
            if phase == "before" and count[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
        if phase == "after" and count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    Store._write = hooked


def main() -> None:
    # Children may switch to another uid ("uid" above), which cannot read a checkout in a
    # private (0700) folder, venv included: what they import lazily must be imported here.
    # pandas imports its text formatter on the first DataFrame.to_string (`droplab status`).
    import pandas as pd

    import droplab.backends
    import droplab.cli
    import droplab.data
    import droplab.models
    import droplab.studies
    import droplab.train  # noqa: F401

    pd.DataFrame({"a": [1]}).to_string()

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "start":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _child(req)
                finally:
                    os._exit(code)
            print(json.dumps({"pid": pid}), flush=True)
        elif req["op"] == "wait":
            _, status = os.waitpid(req["pid"], 0)
            code = os.waitstatus_to_exitcode(status)
            print(json.dumps({"code": code}), flush=True)


if __name__ == "__main__":
    main()
