"""The ``cloaca bench`` sub-command: options, the run loop, progress and output.

``cloaca bench [--workload NAME ...] [--db sqlite|postgres|URL ...] [--concurrency N]
[--processes N] [--repeat N] [--json FILE] [--plot FILE.png]`` runs the standard
workloads (all of them by default, on SQLite by default); ``cloaca bench --workflow
module:name --context JSON --executions N --concurrency C`` runs the user's own
workflow under load. Each workload runs ``--repeat`` times, each time on a fresh
database; the results table shows the median with the min-max range and the targets.
``python -m benchmarks`` and ``python -m cloaca.bench`` run the same command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio

from cloaca.bench.report import (
    Result,
    document,
    git_revision,
    machine_facts,
    plot,
    render_internals,
    render_table,
)
from cloaca.bench.runs import BenchError, Database, resolve_database, run_workload
from cloaca.bench.workloads import (
    RATIO_WORKLOADS,
    STANDARD,
    Workload,
    calibrate_cpu,
    user_workload,
    workload_named,
)

__all__ = ("add_parser", "configure", "main", "run")

NAMES = (*(w.name for w in STANDARD), "user")
THROUGHPUT = frozenset({"simple", "pipeline", "parallel", "cpu", "cpu_async", "user"})


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add every ``cloaca bench`` option to ``parser`` and make ``run`` its action."""
    parser.add_argument(
        "--workload",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help="workload to run (repeatable; default: all standard); one of "
        + ", ".join(NAMES),
    )
    parser.add_argument(
        "--db",
        action="append",
        metavar="sqlite|postgres|URL",
        help="backend (repeatable; default sqlite). 'postgres' is "
        "postgresql://postgres@127.0.0.1:5432/test; a URL may name either backend",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        metavar="N",
        help="executions in flight for the throughput workloads "
        "(simple, pipeline, parallel, cpu, user)",
    )
    parser.add_argument(
        "--processes",
        type=_positive,
        default=1,
        metavar="N",
        help="runner processes sharing each run (cpu compares 1 with max(2, N))",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=3,
        metavar="N",
        help="runs per workload (default 3)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every workload's execution count (e.g. 0.1 for a quick look)",
    )
    parser.add_argument(
        "--json", dest="json_file", metavar="FILE", help="write every figure as JSON"
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw throughput and latency (needs cloaca[bench])",
    )
    parser.add_argument(
        "--workflow",
        metavar="MODULE:NAME",
        help="the user workload: import MODULE and run workflow NAME under load",
    )
    parser.add_argument(
        "--context",
        default="{}",
        metavar="JSON",
        help="input context of each user execution",
    )
    parser.add_argument(
        "--executions",
        type=_positive,
        default=1000,
        metavar="N",
        help="measured executions of the user workload (default 1000)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure one-process runs in this process instead of a fresh worker",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 when a target is missed",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="fail a run whose workers report nothing for S seconds (default 120)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``cloaca bench`` on the ``cloaca`` command's sub-parsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="run the load benchmark workloads",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    return configure(parser)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


class ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self._stream = stream
        self._enabled = enabled and stream.isatty()
        self._label = ""
        self._last = 0.0

    def begin(self, label: str) -> None:
        """Start a new run's line."""
        self._label = label
        self._last = 0.0
        self.update(0, 1)

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` (throttled to ten redraws a second)."""
        if not self._enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = width * done // max(1, total)
        bar = "#" * filled + "-" * (width - filled)
        self._stream.write(f"\r{self._label:<32} [{bar}] {done}/{total}\x1b[K")
        self._stream.flush()

    def end(self) -> None:
        """Clear the line."""
        if self._enabled:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def _selected(args: argparse.Namespace) -> list[Workload]:
    names = list(args.workload or [])
    if args.workflow and "user" not in names:
        names.append("user")
    if not names:
        names = [w.name for w in STANDARD]
    workloads = []
    for name in names:
        if name == "user":
            if not args.workflow:
                raise ValueError("--workload user needs --workflow MODULE:NAME")
            from cloaca.bench.harness import load_user_workflow

            workflow = load_user_workflow(args.workflow)
            workload = user_workload(workflow, args.executions, args.concurrency or 32)
        else:
            workload = workload_named(name).scaled(args.scale)
            if args.concurrency and name in THROUGHPUT:
                workload = workload.with_in_flight(args.concurrency)
        workloads.append(workload)
    return workloads


def _context_json(text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--context is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("--context must be a JSON object")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _postgres_version(databases: Sequence[Database]) -> str | None:
    urls = [d.url for d in databases if d.kind == "postgres" and d.url]
    if not urls:
        return None

    async def ask() -> str:
        import asyncpg

        from cloaca.storage.pg_url import parse_postgres_url

        conn = await asyncpg.connect(**parse_postgres_url(urls[0]).connect_kwargs())
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    try:
        return anyio.run(ask)
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


def _run_one(
    workload: Workload,
    database: Database,
    args: argparse.Namespace,
    context_json: str,
    cpu_iterations: int,
    bar: ProgressBar,
    label: str,
) -> dict[str, float]:
    user_module = args.workflow.partition(":")[0] if workload.name == "user" else None
    common: dict[str, Any] = {
        "context_json": context_json,
        "cpu_iterations": cpu_iterations,
        "user_module": user_module,
        "progress": bar.update,
        "stall_seconds": args.stall_timeout,
    }
    if workload.name not in RATIO_WORKLOADS:
        bar.begin(label)
        return run_workload(
            workload,
            database,
            processes=args.processes,
            in_process=args.in_process and args.processes == 1,
            **common,
        )
    # cpu, cpu_async: the same work with one process and with N, both in
    # worker processes.
    many = max(2, args.processes)
    bar.begin(label + " x1")
    one = run_workload(workload, database, processes=1, **common)
    bar.begin(label + f" x{many}")
    figures = run_workload(workload, database, processes=many, **common)
    figures["workflows_per_s_1"] = one["workflows_per_s"]
    figures["cpu_ms_per_workflow_1"] = one["cpu_ms_per_workflow"]
    figures["workflows_per_s_n"] = figures["workflows_per_s"]
    figures["ratio"] = figures["workflows_per_s"] / max(one["workflows_per_s"], 1e-9)
    return figures


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run ``cloaca bench`` with parsed ``args``; return the exit status."""
    out = out or sys.stdout
    try:
        workloads = _selected(args)
        context_json = _context_json(args.context)
        databases = [resolve_database(db) for db in (args.db or ["sqlite"])]
    except (ValueError, ImportError) as exc:
        print(f"cloaca bench: {exc}", file=sys.stderr)
        return 2
    cpu_iterations = calibrate_cpu()
    bar = ProgressBar(sys.stderr, not args.no_progress)
    results: list[Result] = []
    for database in databases:
        for workload in workloads:
            result = Result(
                workload=workload,
                backend=database.kind,
                database=database.label,
                processes=args.processes,
            )
            for index in range(args.repeat):
                label = f"{workload.name} {database.kind} {index + 1}/{args.repeat}"
                try:
                    figures = _run_one(
                        workload,
                        database,
                        args,
                        context_json,
                        cpu_iterations,
                        bar,
                        label,
                    )
                except BenchError as exc:
                    # One broken workload must not cost the figures of the others.
                    bar.end()
                    print(f"cloaca bench: {exc}", file=sys.stderr)
                    result.error = str(exc).splitlines()[0]
                    break
                result.runs.append(figures)
            results.append(result)
    bar.end()
    machine = machine_facts(_postgres_version(databases))
    revision = git_revision()
    print(render_table(results), file=out)
    print(file=out)
    print(render_internals(results), file=out)
    print(
        f"\n{machine['cpu_count']} CPUs, Python {machine['python']}, SQLite "
        f"{machine['sqlite']}, PostgreSQL {machine['postgresql'] or '-'}, "
        f"revision {revision or 'unknown'}; {args.repeat} runs per workload",
        file=out,
    )
    argv = list(getattr(args, "argv", None) or sys.argv)
    if args.json_file:
        doc = document(results, machine=machine, revision=revision, command=argv)
        Path(args.json_file).write_text(
            json.dumps(doc, indent=2) + "\n", encoding="utf-8"
        )
    if args.plot:
        try:
            plot(results, Path(args.plot))
        except RuntimeError as exc:
            print(f"cloaca bench: {exc}", file=sys.stderr)
            return 2
    if args.check and any(not met for r in results for _, _, met in r.verdicts()):
        return 1
    if any(r.failed_executions or r.error for r in results):
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks`` / ``python -m cloaca.bench``: the same command."""
    parser = configure(
        argparse.ArgumentParser(
            prog="cloaca bench", description=__doc__.split("\n\n")[1]
        )
    )
    args = parser.parse_args(argv)
    args.argv = ["cloaca", "bench", *(sys.argv[1:] if argv is None else argv)]
    return int(args.func(args))
