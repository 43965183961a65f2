"""The ``cloaca`` command: parse the arguments, set up logging, run one sub-command.

``main(argv)`` is the console entry point. Every sub-command has ``--help``,
prints its output on stdout (``--json`` where a script would read it, aligned
tables otherwise) and reports a problem on stderr in one line,
``cloaca: error: <what was wrong>``. Exit codes: 0 success; 1 the command ran and
reports a failure (a failed execution, a problem ``doctor`` found, an unknown id);
2 bad usage (arguments, JSON, workflow modules); 3 the database (or the health
port) is unavailable; 130 interrupted. The sub-commands live in
``cloaca.commands``; ``cloaca bench`` in ``cloaca.bench.command``. This is the one
place in cloaca that configures structlog (CONVENTIONS.md 9).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cloaca.commands import admin, cron, execute, executions, run, workflows
from cloaca.commands.common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    common_parent,
    configure_logging,
)
from cloaca.logging import get_logger

__all__ = ["EXIT_INTERRUPTED", "EXIT_SOFTWARE", "build_parser", "main"]

EXIT_INTERRUPTED = 130
"""Ctrl-C outside ``cloaca run`` (which handles SIGINT itself): 128 + SIGINT."""
EXIT_SOFTWARE = 70
"""An unexpected internal error (a bug: please report it)."""

_EPILOG = """\
The database URL may come from $CLOACA_DATABASE_URL instead of --db.
exit codes: 0 ok, 1 failure reported (failed execution, doctor problem, unknown
id), 2 usage error, 3 database or port unavailable, 130 interrupted.
Run 'cloaca COMMAND --help' for the options of a command."""


def build_parser() -> argparse.ArgumentParser:
    """The ``cloaca`` argument parser with every sub-command registered."""
    from cloaca import __version__
    from cloaca.bench import command as bench_command

    parent = common_parent()
    parser = argparse.ArgumentParser(
        prog="cloaca",
        description="Durable workflow orchestration: run the runtime as a "
        "service, submit and inspect executions, manage schedules, tenants and "
        "the database.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cloaca {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parser(subparsers, parent)
    execute.add_parser(subparsers, parent)
    executions.add_parser(subparsers, parent)
    cron.add_parser(subparsers, parent)
    workflows.add_parsers(subparsers, parent)
    admin.add_parsers(subparsers, parent)
    bench_command.add_parser(subparsers)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cloaca`` command line and return its exit code.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code (see the module docstring).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    level = str(
        getattr(args, "log_level", None)
        or getattr(args, "default_log_level", "warning")
    )
    configure_logging(getattr(args, "log_format", "console"), level)
    try:
        code = func(args)
    except CommandError as exc:
        print(f"cloaca: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cloaca: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``cloaca executions list | head``): not an error.
        # Point stdout at devnull so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        get_logger("cloaca.cli").debug("cli.internal_error", exc_info=True)
        print(
            f"cloaca: error: internal error: {type(exc).__name__}: {_one_line(exc)}",
            file=sys.stderr,
        )
        return EXIT_SOFTWARE
    return EXIT_OK if code is None else int(code)


if __name__ == "__main__":
    raise SystemExit(main())
