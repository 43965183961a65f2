"""What every ``cloaca`` sub-command shares: exit codes, errors, options and output.

A sub-command handler takes the parsed ``argparse.Namespace`` and returns an exit
code (``EXIT_OK``, ``EXIT_FAILED``, ``EXIT_USAGE``, ``EXIT_UNAVAILABLE``). It
reports a problem by raising ``CommandError``, which ``cloaca.cli.main`` prints on
stderr as one line (``cloaca: error: <what was wrong>``) before returning its
code. The database URL comes from ``--db`` or ``CLOACA_DATABASE_URL``; workflow
modules are imported from module names, ``.py`` files or folders of them; logging
is structlog, configured here and nowhere else in cloaca (CONVENTIONS.md 9).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar, TypeVarTuple, Unpack

import anyio
import structlog

__all__ = (
    "DATABASE_ENV",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CommandError",
    "add_database_options",
    "add_json_option",
    "add_workflows_option",
    "common_parent",
    "configure_logging",
    "database_url",
    "format_duration",
    "format_time",
    "load_workflows",
    "print_json",
    "run_async",
    "seconds_between",
)

EXIT_OK: Final = 0
"""The command did what was asked."""
EXIT_FAILED: Final = 1
"""The command ran, and what it reports is a failure (a failed execution, a
problem found by ``doctor``, an id that does not exist)."""
EXIT_USAGE: Final = 2
"""Bad arguments: an unknown option or workflow, invalid JSON, a module that
cannot be imported (argparse uses 2 as well)."""
EXIT_UNAVAILABLE: Final = 3
"""The database (or another resource the command needs, such as the health
port) cannot be reached, opened or used."""

DATABASE_ENV: Final = "CLOACA_DATABASE_URL"
"""Environment variable that stands in for ``--db``."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("console", "json")


class CommandError(Exception):
    """A sub-command cannot do what was asked; printed on stderr as one line.

    Args:
        message: What was wrong, naming the thing (URL with its password masked,
            workflow, id, file).
        exit_code: The process exit code to return.
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- options -------------------------------------------------------------------


def common_parent() -> argparse.ArgumentParser:
    """The options every sub-command accepts: logging format and level."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("logging")
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="console",
        help="log lines on stderr as human-readable text or as JSON objects "
        "(default: console)",
    )
    group.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        default=None,
        help="lowest level logged (default: info for 'run', warning otherwise)",
    )
    return parent


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """``--db URL`` (or ``CLOACA_DATABASE_URL``) and ``--schema S``."""
    parser.add_argument(
        "--db",
        metavar="URL",
        help=f"database URL: sqlite:///abs/path.db, postgresql://user:pass@host/db "
        f"(default: ${DATABASE_ENV})",
    )
    parser.add_argument(
        "--schema",
        metavar="S",
        help="PostgreSQL schema holding the tables (multi-tenancy)",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: machine-readable output on stdout."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of a table (for scripts)",
    )


def add_workflows_option(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--workflows MODULE_OR_PATH [...]``: what defines tasks and workflows."""
    parser.add_argument(
        "--workflows",
        metavar="MODULE_OR_PATH",
        nargs="+",
        action="extend",
        required=required,
        default=[],
        help="modules defining tasks, workflows and triggers: a dotted module "
        "name, a .py file or a folder of .py files (repeatable)",
    )


def database_url(args: argparse.Namespace) -> str:
    """The URL of ``--db``, else of ``CLOACA_DATABASE_URL``.

    Raises:
        CommandError: Neither is set (``EXIT_USAGE``).
    """
    url = getattr(args, "db", None) or os.environ.get(DATABASE_ENV)
    if not url:
        raise CommandError(
            f"no database: pass --db URL or set {DATABASE_ENV}", EXIT_USAGE
        )
    return str(url)


# -- workflow modules ----------------------------------------------------------


def _module_name_for(path: Path) -> str:
    stem = path.stem
    name = (
        stem
        if stem.isidentifier()
        else "_" + "".join(ch if ch.isalnum() else "_" for ch in stem)
    )
    existing = sys.modules.get(name)
    if existing is None or getattr(existing, "__file__", None) == str(path):
        return name
    # Never shadow an unrelated module (a user file named json.py).
    return f"cloaca_workflows_{name}"


def _import_file(path: Path) -> str:
    path = path.resolve()
    folder = str(path.parent)
    # Sibling imports (``from _common import ...``) work as under ``python file.py``.
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = _module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CommandError(f"cannot load workflows from {str(path)!r}", EXIT_USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return name


def _targets(spec: str) -> Iterator[tuple[str, Path | None]]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        if not files:
            raise CommandError(f"no .py files in folder {spec!r}", EXIT_USAGE)
        for file in files:
            yield str(file), file
    elif spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise CommandError(f"no such workflows file: {spec!r}", EXIT_USAGE)
        yield spec, path
    else:
        yield spec, None


def load_workflows(specs: Sequence[str]) -> list[str]:
    """Import every module that defines tasks, workflows or triggers.

    Args:
        specs: Dotted module names (found from the current directory too),
            ``.py`` files, or folders whose ``*.py`` files (not starting with
            ``_``) are imported in name order.

    Returns:
        The names of the imported modules, in order.

    Raises:
        CommandError: A module is missing or raised while importing
            (``EXIT_USAGE``), naming it and the error.
    """
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    loaded: list[str] = []
    for spec in specs:
        for label, path in _targets(spec):
            try:
                if path is None:
                    importlib.import_module(label)
                    loaded.append(label)
                else:
                    loaded.append(_import_file(path))
            except CommandError:
                raise
            except (Exception, SystemExit) as exc:
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                raise CommandError(
                    f"cannot load workflows from {label!r}: {reason}", EXIT_USAGE
                ) from exc
    return loaded


# -- logging -------------------------------------------------------------------


def configure_logging(
    log_format: str, level: str, stream: TextIO | None = None
) -> None:
    """Send cloaca's structlog events to ``stream`` (stderr) as text or JSON.

    Args:
        log_format: ``console`` (key=value text) or ``json`` (one object a line,
            with ``event``, ``level``, ``timestamp`` and the event's keys).
        level: Lowest level logged (``debug`` ... ``critical``).
        stream: Where lines go; stderr by default, keeping stdout for output.
    """
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(default=str, sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


# -- async ---------------------------------------------------------------------

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


def _only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


def run_async(fn: Callable[[Unpack[_Ts]], Awaitable[_T]], *args: *_Ts) -> _T:
    """``anyio.run(fn, *args)`` on asyncio, with a lone error out of its group.

    Task groups wrap what they raise in exception groups; a sub-command that
    fails for one reason reports that reason, not a group of one.
    """
    try:
        return anyio.run(fn, *args)
    except BaseExceptionGroup as group:
        leaf = _only_leaf(group)
        if leaf is None:
            raise
        raise leaf from leaf.__cause__


# -- output --------------------------------------------------------------------


def print_json(value: object, stream: TextIO | None = None) -> None:
    """Print ``value`` as indented JSON (UTF-8 text kept as it is)."""
    out = stream or sys.stdout
    out.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def format_time(value: datetime | None) -> str | None:
    """RFC 3339 with ``+00:00`` (API.md 1.5), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat()


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds, or None when either is unknown."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def format_duration(seconds: float | None) -> str:
    """A short human duration: ``850ms``, ``2.41s``, ``3m05s``, ``1h02m``; ``-``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
