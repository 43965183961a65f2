"""``cloaca executions list`` and ``cloaca executions show ID``.

``list`` prints the newest executions (filtered by workflow and status) as a
table or JSON. ``show`` prints one execution: its header (workflow, status, times,
error, final context), a per-task table (state, attempts, start, duration, error)
and a timeline with one bar per task on a shared time axis. Both read the database
through the store and never write to it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from cloaca import texts
from cloaca.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_database_options,
    add_json_option,
    database_url,
    format_duration,
    format_time,
    print_json,
    run_async,
    seconds_between,
)
from cloaca.commands.database import opened_store
from cloaca.commands.render import Bar, shorten, table, timeline
from cloaca.storage.protocol import ExecutionRow, TaskRow

__all__ = ("STATUSES", "add_parser", "attempts_made", "execution_json")

STATUSES: Final = ("Pending", "Running", "Completed", "Failed", "Cancelled", "Paused")
"""Execution states a filter may name (API.md 4.3)."""


def _status(text: str) -> str:
    for status in STATUSES:
        if status.lower() == text.lower():
            return status
    raise argparse.ArgumentTypeError(
        f"invalid status {text!r} (choose from {', '.join(STATUSES)})"
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register ``executions list`` and ``executions show``."""
    group = subparsers.add_parser(
        "executions",
        help="list and inspect executions",
        description="List executions, or show one with its tasks and a timeline.",
    )
    commands = group.add_subparsers(dest="executions_command", metavar="COMMAND")
    commands.required = True
    listing = commands.add_parser(
        "list",
        parents=[parent],
        help="newest executions first",
        description="List executions, newest first.",
    )
    add_database_options(listing)
    listing.add_argument("--workflow", metavar="W", help="only this workflow")
    listing.add_argument(
        "--status", metavar="S", type=_status, help=f"only {'/'.join(STATUSES)}"
    )
    listing.add_argument(
        "--limit", metavar="N", type=_positive, default=20, help="at most N (20)"
    )
    add_json_option(listing)
    listing.set_defaults(func=list_command)
    show = commands.add_parser(
        "show",
        parents=[parent],
        help="one execution: tasks, attempts, errors, timeline",
        description="Show one execution: a per-task table and a timeline.",
    )
    show.add_argument("execution_id", metavar="ID", help="the execution's id")
    add_database_options(show)
    add_json_option(show)
    show.set_defaults(func=show_command)


def attempts_made(task: TaskRow) -> int:
    """How many attempts of ``task`` have run (or are running)."""
    if task.status in ("NotStarted", "Skipped"):
        return 0
    if task.status == "Ready":
        # Waiting for the next attempt: ``attempt`` counts the one to come.
        return task.attempt - 1
    return task.attempt


def _task_id(task_name: str) -> str:
    return task_name.rsplit("::", 1)[-1]


TASK_ERROR_PREFIX: Final = texts.TASK_EXECUTION_FAILED_PREFIX
"""What every task error text starts with (API.md 4.4): left out of tables."""


def _task_error(task: TaskRow) -> str | None:
    if task.status == "Failed":
        return task.error_details or task.last_error
    return task.last_error


def _brief(error: str | None) -> str:
    return "" if error is None else error.removeprefix(TASK_ERROR_PREFIX)


def _end_or_now(end: datetime | None, status: str, now: datetime) -> datetime | None:
    return end if end is not None or status not in ("Running", "Pending") else now


def _json_context(text: str | None) -> Any:
    return {} if text is None else json.loads(text)


def execution_json(row: ExecutionRow, *, with_tasks: bool) -> dict[str, Any]:
    """An execution as a JSON object (times RFC 3339, durations in seconds)."""
    data: dict[str, Any] = {
        "execution_id": str(row.id),
        "workflow": row.pipeline_name,
        "version": row.pipeline_version,
        "status": row.status,
        "started_at": format_time(row.started_at),
        "completed_at": format_time(row.completed_at),
        "duration_seconds": seconds_between(row.started_at, row.completed_at),
        "error": row.error_details,
        "recovery_attempts": row.recovery_attempts,
    }
    if with_tasks:
        data["context"] = _json_context(row.context_json)
        data["tasks"] = [
            {
                "task": _task_id(t.task_name),
                "task_name": t.task_name,
                "status": t.status,
                "attempts": attempts_made(t),
                "max_attempts": t.max_attempts,
                "started_at": format_time(t.started_at),
                "completed_at": format_time(t.completed_at),
                "duration_seconds": seconds_between(t.started_at, t.completed_at),
                "retry_at": format_time(t.retry_at),
                "error": _task_error(t),
                "recovery_attempts": t.recovery_attempts,
            }
            for t in _ordered(row.tasks)
        ]
    return data


def _ordered(tasks: tuple[TaskRow, ...]) -> list[TaskRow]:
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(tasks, key=lambda t: (t.started_at or far, t.task_name))


def _clock(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def _terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


async def _list(args: argparse.Namespace) -> list[ExecutionRow]:
    async with opened_store(database_url(args), args.schema) as store:
        return await store.list_executions(
            pipeline_name=args.workflow, status=args.status, limit=args.limit
        )


def list_command(args: argparse.Namespace) -> int:
    """``cloaca executions list``."""
    rows = run_async(_list, args)
    if args.json:
        print_json([execution_json(r, with_tasks=False) for r in rows])
        return EXIT_OK
    if not rows:
        print("no executions")
        return EXIT_OK
    now = datetime.now(UTC)
    lines = table(
        ["ID", "WORKFLOW", "STATUS", "STARTED", "DURATION"],
        [
            [
                str(r.id),
                r.pipeline_name,
                r.status,
                format_time(r.started_at) or "-",
                format_duration(
                    seconds_between(
                        r.started_at, _end_or_now(r.completed_at, r.status, now)
                    )
                ),
            ]
            for r in rows
        ],
        max_widths=[None, 40, None, None, None],
    )
    print("\n".join(lines))
    return EXIT_OK


def _execution_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CommandError(
            f"not an execution id: {text!r} (expected a UUID)", EXIT_USAGE
        ) from None


async def _show(args: argparse.Namespace, execution_id: uuid.UUID) -> ExecutionRow:
    url = database_url(args)
    async with opened_store(url, args.schema) as store:
        row = await store.get_execution(execution_id)
        display = store.display_url
    if row is None:
        raise CommandError(f"no execution {execution_id} in {display}", EXIT_FAILED)
    return row


def show_lines(row: ExecutionRow, now: datetime, width: int) -> list[str]:
    """The human form of ``executions show``."""
    end = _end_or_now(row.completed_at, row.status, now)
    total = seconds_between(row.started_at, end) or 0.0
    finished = format_time(row.completed_at) or "-"
    lines = [
        f"execution  {row.id}",
        f"workflow   {row.pipeline_name} (version {row.pipeline_version})",
        f"status     {row.status}",
        f"started    {format_time(row.started_at)}",
        f"finished   {finished}  ({format_duration(total)})",
    ]
    if row.error_details:
        lines.append(f"error      {shorten(row.error_details, max(20, width - 11))}")
    if row.context_json is not None:
        lines.append(f"context    {shorten(row.context_json, max(20, width - 11))}")
    tasks = _ordered(row.tasks)
    lines.append("")
    error_width = max(20, width - 70)
    lines += table(
        ["TASK", "STATE", "ATTEMPTS", "START", "DURATION", "ERROR"],
        [
            [
                _task_id(t.task_name),
                t.status,
                f"{attempts_made(t)}/{t.max_attempts}",
                _clock(t.started_at),
                format_duration(
                    seconds_between(
                        t.started_at, _end_or_now(t.completed_at, t.status, now)
                    )
                ),
                _brief(_task_error(t)),
            ]
            for t in tasks
        ],
        max_widths=[30, None, None, None, None, error_width],
    )
    bars = []
    for t in tasks:
        stop = _end_or_now(t.completed_at, t.status, now)
        bars.append(
            Bar(
                label=_task_id(t.task_name),
                status=t.status,
                start=seconds_between(row.started_at, t.started_at),
                end=seconds_between(row.started_at, stop),
            )
        )
    label_width = max([len(b.label) for b in bars] + [4])
    lines.append("")
    lines += timeline(bars, total, width=max(20, width - label_width - 30))
    return lines


def show_command(args: argparse.Namespace) -> int:
    """``cloaca executions show ID``."""
    execution_id = _execution_id(args.execution_id)
    row = run_async(_show, args, execution_id)
    if args.json:
        print_json(execution_json(row, with_tasks=True))
    else:
        print("\n".join(show_lines(row, datetime.now(UTC), _terminal_width())))
    return EXIT_OK
