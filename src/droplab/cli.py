"""The ``droplab`` command.

    droplab run [STUDY ...] [--preset quick|standard|full] [--seed N] [--backend local|ray]
                [--address ADDR] [--workers N] [--device cpu|cuda] [--store PATH] [--out DIR]
                [--model pkg.mod:build] [--data pkg.mod:load] [--data-dir DIR] [--no-report]
    droplab list
    droplab status  [--store PATH]
    droplab results STUDY [--preset P] [--seed N] [--json] [--store PATH]
    droplab report  [--store PATH] [--out DIR]
    droplab findings [--store PATH] [--out FILE] [--readings DIR]

User errors (unknown study, bad option, unreadable store, unreachable Ray, bad --model)
print one line on stderr and exit with code 2, no traceback (set DROPLAB_TRACEBACK=1 to
see one). Ctrl-C during a run keeps the finished trials and exits with 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]

DEFAULT_STORE = Path("droplab-results") / "results.db"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake of the user: one line, exit code 2."""


class ReportFailed(Exception):
    """Rendering the report raised (a bug, not a user error): exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        help=f"the SQLite results store (default: {DEFAULT_STORE})",
    )


def _parser() -> _Parser:
    from droplab.studies.base import PRESETS

    parser = _Parser(
        prog="droplab",
        description="Run dropout studies into a resumable SQLite store and report them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run studies (all by default) and store their trials")
    run.add_argument("studies", nargs="*", metavar="STUDY", help="study names (default: all)")
    run.add_argument("--preset", default="standard", choices=PRESETS, help="size of the grid")
    run.add_argument(
        "--seed",
        type=_root_seed,
        default=0,
        help="root seed: every trial's seeds derive from it; another N is an independent "
        "replication (default 0)",
    )
    run.add_argument("--backend", default="local", choices=("local", "ray"))
    run.add_argument("--address", default=None, help="Ray cluster address (--backend ray)")
    run.add_argument(
        "--workers", type=int, default=1, help="local: processes; ray: groups in flight"
    )
    run.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    _add_store(run)
    run.add_argument(
        "--out", type=Path, default=None, help="report folder (default: beside the store)"
    )
    run.add_argument("--model", default=None, help="your model factory, pkg.module:build")
    run.add_argument("--data", default=None, help="your dataset loader, pkg.module:load")
    run.add_argument(
        "--data-dir", type=Path, default=None, help="local dataset files (MNIST, CIFAR-10, ...)"
    )
    run.add_argument("--no-report", action="store_true", help="do not render the report")

    sub.add_parser("list", help="list the studies and their questions")

    status = sub.add_parser("status", help="finished / failed / running trials per study")
    _add_store(status)

    results = sub.add_parser("results", help="a study's results table")
    results.add_argument("study", metavar="STUDY")
    results.add_argument("--preset", default=None, choices=PRESETS)
    results.add_argument(
        "--seed", type=_root_seed, default=None, help="only the trials of this root seed"
    )
    results.add_argument(
        "--json", action="store_true", help="print the verdict (answer and contrasts) as JSON"
    )
    _add_store(results)

    report = sub.add_parser("report", help="render the report (HTML + Markdown) from the store")
    _add_store(report)
    report.add_argument("--out", type=Path, default=None, help="report folder")

    findings = sub.add_parser(
        "findings", help="write the findings (answers and contrasts) as Markdown from the store"
    )
    _add_store(findings)
    findings.add_argument(
        "--out", type=Path, default=Path("docs") / "findings.md", help="the Markdown file"
    )
    findings.add_argument(
        "--readings",
        type=Path,
        default=None,
        help="folder of <study>.md human readings to include (default: none)",
    )
    return parser


def _root_seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``droplab`` console script; returns the exit code."""
    from droplab.backends import BackendError
    from droplab.store import StoreError

    try:
        args = _parser().parse_args(argv)
        command = {
            "run": _cmd_run,
            "list": _cmd_list,
            "status": _cmd_status,
            "results": _cmd_results,
            "report": _cmd_report,
            "findings": _cmd_findings,
        }[args.command]
        return command(args)
    except (UsageError, StoreError, BackendError) as e:
        if os.environ.get("DROPLAB_TRACEBACK"):
            raise
        print(f"droplab: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "droplab: interrupted; finished trials are kept, run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _study(name: str) -> Any:
    from droplab import studies

    try:
        return studies.get(name)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _open_store(path: Path, *, readonly: bool) -> Any:
    from droplab.store import Store

    return Store(path, readonly=readonly)


def _out_dir(args: argparse.Namespace) -> Path:
    return args.out if args.out is not None else args.store.parent / "report"


def _check_device(device: str) -> str:
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device}: no CUDA device is available here; use --device cpu"
            )
        return device
    raise UsageError(f"--device must be cpu, cuda or cuda:N, got {device!r}")


# -- run ----------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from droplab import studies
    from droplab.backends import make_backend, run_study

    if args.studies:
        chosen = [_study(n) for n in dict.fromkeys(args.studies)]
    else:
        if not studies.REGISTRY:
            raise UsageError("no studies are registered")
        chosen = list(studies.REGISTRY.values())
        for module, why in studies.UNAVAILABLE.items():  # never skip a study silently
            print(
                f"droplab: warning: study module {module!r} is unavailable: {why}", file=sys.stderr
            )
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.address and args.backend != "ray":
        raise UsageError("--address is for the ray backend; add --backend ray")
    device = _check_device(args.device)
    if args.data_dir is not None:
        if not args.data_dir.is_dir():
            raise UsageError(f"--data-dir {args.data_dir} is not a folder")
        # Studies' loaders (here and in worker processes) read it from the environment.
        os.environ["DROPLAB_DATA_DIR"] = str(args.data_dir.resolve())
    if (args.model or args.data) and not args.studies:
        raise UsageError(
            "--model/--data need the study names, e.g. `droplab run effect --model ...`"
        )

    plans = []
    for study in chosen:
        try:
            trials = study.expand(args.preset, model=args.model, data=args.data, seed=args.seed)
        except (ValueError, TypeError) as e:
            if os.environ.get("DROPLAB_TRACEBACK"):
                raise
            raise UsageError(_one_line(e)) from None
        plans.append((study, trials))

    store = _open_store(args.store, readonly=False)
    # SIGTERM (kill, a CI timeout) stops like Ctrl-C: trials in flight are marked unfinished.
    previous = _on_sigterm(_terminate)
    failed_total = 0
    try:
        with store.lock():
            stale = store.mark_unfinished()  # 'running' rows left by a killed run
            if stale:
                print(
                    f"resuming: {stale} trials of an interrupted run will be re-run",
                    file=sys.stderr,
                )
            backend = None
            try:
                with _progress() as progress:
                    for study, trials in plans:
                        task = progress.add_task(study.name, total=len(trials))
                        pending = len(trials) - len(store.finished([t.hash for t in trials]))
                        if pending and backend is None:
                            backend = make_backend(
                                args.backend,
                                workers=args.workers,
                                address=args.address,
                                device=device,
                            )

                        def update(done: int, total: int, task: Any = task) -> None:
                            progress.update(task, completed=done, total=total)

                        summary = run_study(
                            study,
                            trials,
                            store,
                            backend=backend if backend is not None else "local",
                            device=device,
                            on_progress=update,
                        )
                        failed_total += summary.failed
                        ran = summary.finished + summary.failed
                        progress.console.print(
                            f"{study.name}: {summary.total} trials: {summary.skipped} already "
                            f"stored, {summary.finished} run, {summary.failed} failed"
                            + (f" ({summary.seconds:.0f} s)" if ran else "")
                        )
            finally:
                if backend is not None:
                    backend.close()
        _print_verdicts(store, [s for s, _ in plans], args.preset)
    finally:
        store.close()
        _on_sigterm(previous)

    report_path, report_failed = None, False
    if not args.no_report:
        try:
            report_path = _render_report(args.store, _out_dir(args))
        except ReportFailed as e:
            print(e, file=sys.stderr)
            report_failed = True
    print(f"results: {args.store}")
    if report_path is not None:
        print(f"report:  {report_path}")
    if report_failed:
        return 1
    if failed_total:
        print(
            f"droplab: {failed_total} trials failed (see `droplab status`); "
            "run the same command again to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM; returns the previous one (None off the main thread)."""
    if handler is None:
        return None
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def _print_verdicts(store: Any, chosen: list[Any], preset: str) -> None:
    from droplab.studies.base import select_preset

    print("\nverdicts:")
    for study in chosen:
        frame = select_preset(store.frame(study.name), preset)
        if not (frame["status"] == "finished").any():
            print(f"  {study.name}: no finished trials{_failures(store, study.name, preset)}")
            continue
        try:
            findings = study.analyze(frame)
        except Exception as e:
            if os.environ.get("DROPLAB_TRACEBACK"):
                raise
            print(f"  {study.name}: analysis failed: {_one_line(e)}")
            continue
        print(f"  {study.name}: {findings.answer or findings.verdict}")
        if findings.primary is not None:
            print(f"    primary: {findings.primary.description}: {findings.primary.short()}")


def _render_report(store_path: Path, out_dir: Path) -> Path | None:
    """The report via ``droplab.report.render`` (its index.html), or None when that package
    is missing and the tables were printed instead.

    Raises:
        ReportFailed: rendering raised; the message says where the results are.
    """
    try:
        from droplab.report import render
    except ImportError as e:
        if not (e.name or "").startswith("droplab.report"):
            raise
        print("(droplab.report is not available: printing the tables instead)")
        _print_all_tables(store_path)
        return None
    try:
        return Path(render(store_path, out_dir))
    except Exception as e:  # the results are safe in the store; say so instead of a traceback
        if os.environ.get("DROPLAB_TRACEBACK"):
            raise
        raise ReportFailed(
            f"droplab: the report failed ({_one_line(e)}); the results are in {store_path}, "
            "`droplab results STUDY` prints them"
        ) from None


def _print_all_tables(store_path: Path) -> None:
    from droplab import studies

    with _open_store(store_path, readonly=True) as store:
        for name in store.studies():
            if name in studies.REGISTRY:
                try:
                    _print_results(store, studies.REGISTRY[name], None)
                except UsageError as e:  # e.g. only failed trials so far
                    print(f"{name}: {e}\n")


# -- list / status / results / report ----------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    from droplab import studies

    for name, study in studies.REGISTRY.items():
        tag = "  [custom: --model/--data]" if study.custom else ""
        print(f"{name}{tag}\n    {study.question}")
    for module, why in studies.UNAVAILABLE.items():
        print(f"{module} (unavailable)\n    {why}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from droplab.store import RunLock

    with _open_store(args.store, readonly=True) as store:
        table = store.status()
        prov = store.provenance()
    if table.empty:
        print(f"{args.store}: no trials yet (`droplab run` adds them)")
        return 0
    print(table.to_string(index=False))
    roots = _root_seed_lines(args.store)
    if roots:
        print("\nroot seeds (`droplab run --seed N`) of the finished trials:")
        print("\n".join(roots))
    if not prov.empty:
        print("\nfinished trials were trained by (code = droplab git commit):")
        print(prov.to_string(index=False))
    running = int(table["running"].sum())
    if RunLock.held(args.store):
        print("a `droplab run` is in progress on this store")
    elif running:
        print(
            f"no run in progress: the {running} 'running' trials are from a run that was "
            "killed; `droplab run` re-runs them"
        )
    return 0


def _root_seed_lines(path: Path) -> list[str]:
    """'  study (preset): 0, 1' per study and preset with finished trials."""
    out = []
    with _open_store(path, readonly=True) as store:
        for name in store.studies():
            done = store.frame(name, status="finished")
            if done.empty:
                continue
            roots = done["root_seed"].fillna(0) if "root_seed" in done else done["seed"] * 0
            for preset, r in roots.groupby(done["preset"]):
                seeds = ", ".join(str(int(s)) for s in sorted(r.unique()))
                out.append(f"  {name} ({preset}): {seeds}")
    return out


def _failures(store: Any, name: str, preset: str | None) -> str:
    """'; N trials failed, e.g. <last line of an error>' when a study has failed trials."""
    failed = store.frame(name, preset=preset, status="failed")
    if failed.empty:
        return ""
    lines = str(failed["error"].iloc[0] or "").strip().splitlines()
    return f"; {len(failed)} trials failed, e.g. {lines[-1] if lines else 'unknown error'}"


def _print_results(
    store: Any, study: Any, preset: str | None, seed: int | None = None, as_json: bool = False
) -> None:
    import json

    import pandas as pd

    from droplab.findings import agreement
    from droplab.report.trials import root_rows, root_seeds
    from droplab.studies.base import select_preset

    frame = select_preset(root_rows(store.frame(study.name), seed), preset)
    if not (frame["status"] == "finished").any():
        which = f" (preset {preset})" if preset else ""
        which += f" (root seed {seed})" if seed is not None else ""
        raise UsageError(
            f"no finished trials of study {study.name!r}{which} in {store.path}"
            f"{_failures(store, study.name, preset)}; run `droplab run {study.name}"
            f"{f' --seed {seed}' if seed else ''}` first"
        )
    findings = study.analyze(frame)
    if as_json:
        out = findings.to_dict()
        out["preset"] = str(frame["preset"].iloc[0])
        out["trials"] = int((frame["status"] == "finished").sum())
        out["failed"] = int((frame["status"] != "finished").sum())
        roots = root_seeds(frame[frame["status"] == "finished"])
        if findings.primary is not None and len(roots) > 1:
            # each root seed alone is an independent replication of the primary contrast
            reps = [study.analyze(root_rows(frame, r)).primary for r in roots]
            reps = [c for c in reps if c is not None]
            out["replications"] = [c.to_dict() for c in reps]
            out["agreement"] = agreement(reps) if len(reps) > 1 else None
        print(json.dumps(out, indent=2, allow_nan=False))
        return
    with pd.option_context(
        "display.width", 200, "display.max_columns", 50, "display.max_rows", 500
    ):
        print(f"== {study.name} (preset {frame['preset'].iloc[0]}) ==")
        print(study.question)
        if findings.answer:
            print(f"\nanswer: {findings.answer}\n")
            for c in findings.contrasts:
                tag = "primary  " if c.primary else "secondary"
                print(f"  {tag} {c.description}: {c.short()}")
            for note in findings.notes:
                print(f"  note: {note}")
            print()
        else:
            print(f"\nverdict: {findings.verdict}\n")
        print(findings.table.to_string(index=False))
        for title, extra in findings.extra_tables.items():
            print(f"\n{title}:\n{extra.to_string(index=False)}")
        if findings.failed:
            print(f"\n{len(findings.failed)} failed trials:")
            for line in findings.failed:
                print(f"  {line}")
    print()


def _cmd_results(args: argparse.Namespace) -> int:
    study = _study(args.study)
    with _open_store(args.store, readonly=True) as store:
        _print_results(store, study, args.preset, args.seed, args.json)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    with _open_store(args.store, readonly=True):
        pass  # a clear error now for a missing or broken store
    t0 = time.time()
    try:
        path = _render_report(args.store, _out_dir(args))
    except ReportFailed as e:
        print(e, file=sys.stderr)
        return 1
    if path is not None:
        print(f"report: {path} ({time.time() - t0:.1f} s)")
    return 0


def _cmd_findings(args: argparse.Namespace) -> int:
    from droplab import studies
    from droplab.backends.common import code_version
    from droplab.report.findings_md import write_findings

    with _open_store(args.store, readonly=True) as store:
        names = store.studies()
    chosen = [studies.REGISTRY[n] for n in studies.REGISTRY if n in names]
    if not chosen:
        raise UsageError(f"{args.store} holds no trials of a registered study; run `droplab run`")
    if args.readings is not None and not args.readings.is_dir():
        raise UsageError(f"--readings {args.readings} is not a folder")
    command = "droplab findings --store " + str(args.store) + " --out " + str(args.out)
    if args.readings is not None:
        command += f" --readings {args.readings}"
    path = write_findings(
        args.store,
        args.out,
        chosen,
        command=command,
        commit=code_version() or "unknown",
        readings_dir=args.readings,
    )
    print(f"findings: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
