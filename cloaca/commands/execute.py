"""``cloaca execute WORKFLOW``: start an execution from the command line.

Without ``--wait`` the execution is written to the database as ``Pending`` (with
its task rows) and its id printed; a running ``cloaca run`` on that database
claims it within its poll interval. With ``--wait`` it runs inside this process
instead, on a runtime of its own (no recovery, no cron: it is meant for a
database no ``cloaca run`` serves), and the final status and context are printed;
the exit code is 0 for ``Completed`` and 1 for ``Failed``. Either way the
workflow must be registered here, so ``--workflows`` names its module, as for
``cloaca run``. ``--context`` takes a JSON object, ``@file`` or ``@-`` (stdin).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio

from cloaca.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_database_options,
    add_json_option,
    add_workflows_option,
    database_url,
    format_duration,
    format_time,
    load_workflows,
    print_json,
    run_async,
    seconds_between,
)
from cloaca.commands.database import storage_failure
from cloaca.commands.workflows import require_workflow
from cloaca.config import DefaultRunnerConfig, settings_of
from cloaca.context import Context
from cloaca.runtime.outcome import ExecutionOutcome
from cloaca.storage.errors import StorageError
from cloaca.storage.identifiers import InvalidIdentifier

__all__ = ("add_parser", "outcome_json", "read_context")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register ``cloaca execute``."""
    parser = subparsers.add_parser(
        "execute",
        parents=[parent],
        help="submit an execution (or run it here with --wait)",
        description="Submit an execution of WORKFLOW to the runtime serving the "
        "database and print its id, or, with --wait, run it in this process and "
        "print its final status and context.",
    )
    parser.add_argument("workflow", metavar="WORKFLOW", help="the workflow's name")
    add_database_options(parser)
    add_workflows_option(parser, required=True)
    parser.add_argument(
        "--context",
        metavar="JSON|@FILE",
        default="{}",
        help="initial context: a JSON object, @file to read it from a file, "
        "@- from stdin (default: {})",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="run the execution in this process until it ends (for a database "
        "no 'cloaca run' serves); exit 1 if it fails",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        help="with --wait: give up waiting after this long (default: no limit)",
    )
    add_json_option(parser)
    parser.set_defaults(func=execute_command)


def read_context(text: str) -> str:
    """The ``--context`` value as compact JSON object text.

    Raises:
        CommandError: An unreadable file or text that is not a JSON object of
            storable values (``EXIT_USAGE``).
    """
    source = "--context"
    if text.startswith("@"):
        name = text[1:]
        source = f"context file {name!r}" if name != "-" else "context on stdin"
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {source}: {exc}", EXIT_USAGE) from exc
    try:
        return Context.from_json(text).to_json()
    except Exception as exc:  # ValueError, or the plain Exception of API.md 1.5
        raise CommandError(f"invalid {source}: {exc}", EXIT_USAGE) from exc


def outcome_json(outcome: ExecutionOutcome) -> dict[str, Any]:
    """A finished execution as a JSON object."""
    return {
        "execution_id": str(outcome.execution_id),
        "workflow": outcome.workflow_name,
        "status": outcome.status,
        "error": outcome.error,
        "started_at": format_time(outcome.started_at),
        "completed_at": format_time(outcome.completed_at),
        "duration_seconds": seconds_between(outcome.started_at, outcome.completed_at),
        "context": json.loads(outcome.final_context_json),
        "tasks": [
            {
                "task": t.task_id,
                "status": t.status,
                "attempts": t.attempts,
                "error": t.error,
            }
            for t in outcome.tasks
        ],
    }


async def _submit(args: argparse.Namespace, url: str, context_json: str) -> uuid.UUID:
    from cloaca.runtime.intake import submit_to_database

    try:
        return await submit_to_database(
            url, args.workflow, context_json, schema=args.schema
        )
    except InvalidIdentifier as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    except StorageError as exc:
        raise storage_failure(exc) from exc


async def _run_here(
    args: argparse.Namespace, url: str, context_json: str
) -> ExecutionOutcome:
    from cloaca.runtime.engine import Runtime

    # Recovery and cron belong to the service: a one-off execution must not
    # take over another process's interrupted work or fire its schedules.
    settings = settings_of(
        DefaultRunnerConfig(enable_recovery=False, enable_cron_scheduling=False)
    )
    try:
        runtime = Runtime(url, settings, schema=args.schema)
    except InvalidIdentifier as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    except StorageError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    send, receive = anyio.create_memory_object_stream[ExecutionOutcome](math.inf)
    with send, receive:
        try:
            async with runtime:
                runtime.add_finish_listener(send.send_nowait)
                execution_id = await runtime.submit(args.workflow, context_json)
                with anyio.move_on_after(args.timeout or math.inf):
                    async for outcome in receive:
                        if outcome.execution_id == execution_id:
                            return outcome
        except StorageError as exc:
            raise storage_failure(exc) from exc
    raise CommandError(
        f"execution {execution_id} of {args.workflow!r} did not finish within "
        f"{args.timeout:g}s; it stays in the database, where the next "
        "'cloaca run' resumes it",
        EXIT_FAILED,
    )


def _print_outcome(outcome: ExecutionOutcome) -> None:
    duration = seconds_between(outcome.started_at, outcome.completed_at)
    print(f"{outcome.execution_id} {outcome.status} in {format_duration(duration)}")
    if outcome.error:
        print(f"error: {outcome.error}")
    print(
        json.dumps(json.loads(outcome.final_context_json), indent=2, ensure_ascii=False)
    )


def execute_command(args: argparse.Namespace) -> int:
    """``cloaca execute WORKFLOW``."""
    url = database_url(args)
    context_json = read_context(args.context)
    if args.timeout is not None and not args.wait:
        raise CommandError("--timeout only applies with --wait", EXIT_USAGE)
    load_workflows(args.workflows)
    require_workflow(args.workflow)
    if not args.wait:
        execution_id = run_async(_submit, args, url, context_json)
        if args.json:
            print_json(
                {
                    "execution_id": str(execution_id),
                    "workflow": args.workflow,
                    "status": "Pending",
                }
            )
        else:
            print(execution_id)
        return EXIT_OK
    outcome = run_async(_run_here, args, url, context_json)
    if args.json:
        print_json(outcome_json(outcome))
    else:
        _print_outcome(outcome)
    return EXIT_OK if outcome.status == "Completed" else EXIT_FAILED
