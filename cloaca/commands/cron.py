"""``cloaca cron list|add|remove|enable|disable|history``: cron schedules.

The sub-commands manage the schedules that a running ``cloaca run`` (or any
runner with cron enabled on the same database) fires. They call the same
management methods as ``DefaultRunner`` (API.md 3.9.4, through
``Schedules.offline``) on the bare store, so they never start a cron service of
their own that could claim due ticks for workflows this process has not loaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from cloaca.commands.common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_database_options,
    add_json_option,
    database_url,
    print_json,
    run_async,
)
from cloaca.commands.database import opened_store
from cloaca.commands.render import table
from cloaca.config import DefaultRunnerConfig, settings_of
from cloaca.runtime.schedules import Schedules
from cloaca.storage.protocol import ScheduleStore

__all__ = ("add_parser",)

_T = TypeVar("_T")


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register ``cron`` and its sub-commands."""
    group = subparsers.add_parser(
        "cron",
        help="cron schedules",
        description="List, add, remove, enable and disable cron schedules, and "
        "show their execution history.",
    )
    commands = group.add_subparsers(dest="cron_command", metavar="COMMAND")
    commands.required = True

    def sub(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, parents=[parent], help=help_text, description=help_text
        )
        add_database_options(parser)
        return parser

    listing = sub("list", "schedules ordered by workflow name")
    listing.add_argument("--enabled-only", action="store_true", help="only enabled")
    listing.add_argument("--limit", type=int, default=100, metavar="N")
    add_json_option(listing)
    listing.set_defaults(func=list_command)

    add = sub("add", "register a workflow on a cron expression")
    add.add_argument("workflow", metavar="WORKFLOW")
    add.add_argument(
        "expression", metavar="EXPRESSION", help="5 fields, or 6 with leading seconds"
    )
    add.add_argument(
        "--timezone", default="UTC", metavar="TZ", help="IANA zone (default UTC)"
    )
    add_json_option(add)
    add.set_defaults(func=add_command)

    for name, help_text, func in (
        ("remove", "delete a schedule and its history", remove_command),
        ("enable", "enable a schedule", enable_command),
        ("disable", "disable a schedule", disable_command),
    ):
        parser = sub(name, help_text)
        parser.add_argument("schedule_id", metavar="ID")
        parser.set_defaults(func=func)

    history = sub("history", "audit records of one schedule, newest first")
    history.add_argument("schedule_id", metavar="ID")
    history.add_argument("--limit", type=int, default=20, metavar="N")
    add_json_option(history)
    history.set_defaults(func=history_command)


def _call(args: argparse.Namespace, action: Callable[[Schedules], Awaitable[_T]]) -> _T:
    async def go() -> _T:
        async with opened_store(database_url(args), args.schema) as store:
            settings = settings_of(DefaultRunnerConfig())
            schedules = Schedules.offline(cast(ScheduleStore, store), settings)
            try:
                return await action(schedules)
            except ValueError as exc:
                # The API's messages name the bad value (expression, zone, id).
                raise CommandError(str(exc), EXIT_USAGE) from exc

    return run_async(go)


def list_command(args: argparse.Namespace) -> int:
    """``cloaca cron list``."""
    rows = _call(
        args, lambda s: s.list_cron_schedules(args.enabled_only, args.limit, 0)
    )
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print("no cron schedules")
        return EXIT_OK
    lines = table(
        ["ID", "WORKFLOW", "EXPRESSION", "TIMEZONE", "ENABLED", "NEXT RUN (UTC)"],
        [
            [
                r["id"],
                r["workflow_name"],
                r["cron_expression"],
                r["timezone"],
                "yes" if r["enabled"] else "no",
                r["next_run_at"],
            ]
            for r in rows
        ],
    )
    print("\n".join(lines))
    return EXIT_OK


def add_command(args: argparse.Namespace) -> int:
    """``cloaca cron add WORKFLOW EXPRESSION [--timezone TZ]``."""
    schedule_id = _call(
        args,
        lambda s: s.register_cron_workflow(
            args.workflow, args.expression, args.timezone
        ),
    )
    if args.json:
        print_json({"id": schedule_id})
    else:
        print(schedule_id)
    return EXIT_OK


def remove_command(args: argparse.Namespace) -> int:
    """``cloaca cron remove ID``."""
    _call(args, lambda s: s.delete_cron_schedule(args.schedule_id))
    return EXIT_OK


def enable_command(args: argparse.Namespace) -> int:
    """``cloaca cron enable ID``."""
    _call(args, lambda s: s.set_cron_schedule_enabled(args.schedule_id, True))
    return EXIT_OK


def disable_command(args: argparse.Namespace) -> int:
    """``cloaca cron disable ID``."""
    _call(args, lambda s: s.set_cron_schedule_enabled(args.schedule_id, False))
    return EXIT_OK


def history_command(args: argparse.Namespace) -> int:
    """``cloaca cron history ID``."""
    rows = _call(
        args, lambda s: s.get_cron_execution_history(args.schedule_id, args.limit, 0)
    )
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print("no executions of this schedule")
        return EXIT_OK
    lines = table(
        ["SCHEDULED (UTC)", "CLAIMED", "EXECUTION"],
        [
            [r["scheduled_time"], r["claimed_at"], r["pipeline_execution_id"] or "lost"]
            for r in rows
        ],
    )
    print("\n".join(lines))
    return EXIT_OK
