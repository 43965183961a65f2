"""``cloaca run``: the runtime as a long-running service.

Imports the modules that define tasks, workflows and triggers, opens the runtime
(schema created or verified, interrupted executions recovered, cron and trigger
services started, executions submitted through the database claimed) and runs
until SIGINT or SIGTERM. The first signal shuts down gracefully: ``/healthz``
turns 503, no new attempt starts, running attempts get ``--shutdown-timeout``
seconds to finish (those that do not are handed back: they stay ``Running`` in
the database and the next runtime's recovery runs them again), the journal is
flushed, the store closed, and the process exits 0. A second signal exits at
once (128 + the signal number), as an operator who presses Ctrl-C twice expects.

Log events (stderr): ``cli.run.ready`` once serving, ``cli.run.stopping`` on the
first signal, ``cli.run.stopped`` at the end, plus the runtime's own events.
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any, cast

import anyio

from cloaca import registry
from cloaca.commands.common import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    add_database_options,
    add_workflows_option,
    database_url,
    load_workflows,
    run_async,
)
from cloaca.commands.database import storage_failure
from cloaca.config import DefaultRunnerConfig, RunnerSettings, settings_of
from cloaca.health import HealthServer, MeteredStore, Metrics
from cloaca.logging import get_logger
from cloaca.runtime.outcome import ExecutionOutcome
from cloaca.storage.errors import StorageError
from cloaca.storage.identifiers import InvalidIdentifier
from cloaca.storage.protocol import Store
from cloaca.storage.urls import mask_password

__all__ = ("add_parser", "positive_int", "settings_from")

logger = get_logger("cloaca.cli")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (0-65535), not {text!r}")
    return value


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register ``cloaca run``."""
    parser = subparsers.add_parser(
        "run",
        parents=[parent],
        help="run the runtime as a service (until SIGINT/SIGTERM)",
        description="Run the runtime: execute submitted, resumed, cron and "
        "trigger executions until SIGINT or SIGTERM, then shut down gracefully.",
    )
    add_database_options(parser)
    add_workflows_option(parser, required=True)
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=positive_int,
        default=4,
        help="task attempts running at once (default 4)",
    )
    parser.add_argument(
        "--poll-interval",
        metavar="MS",
        type=positive_int,
        default=100,
        help="how often executions submitted through the database are looked "
        "for, in milliseconds (default 100)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=30.0,
        help="how long running attempts may take to finish after the first "
        "signal before they are handed back to the next runtime (default 30)",
    )
    parser.add_argument(
        "--health-port",
        metavar="PORT",
        type=_port,
        help="serve /healthz and Prometheus /metrics on this port (0: any free one)",
    )
    parser.add_argument(
        "--health-host",
        metavar="HOST",
        default="127.0.0.1",
        help="address the health server listens on (default 127.0.0.1)",
    )
    parser.set_defaults(func=run_command, default_log_level="info")


def settings_from(args: argparse.Namespace) -> RunnerSettings:
    """The runner settings ``cloaca run`` asks for."""
    config = DefaultRunnerConfig(
        max_concurrent_tasks=args.concurrency,
        scheduler_poll_interval_ms=args.poll_interval,
    )
    return settings_of(config)


class _Signals:
    """The first signal asks for a graceful stop; a second one exits at once."""

    def __init__(self) -> None:
        self.first = anyio.Event()
        self.received: signal.Signals | None = None

    async def watch(self, receiver: Any) -> None:
        async for signum in receiver:
            if self.received is None:
                self.received = signal.Signals(signum)
                self.first.set()
                continue
            name = signal.Signals(signum).name
            logger.warning("cli.run.forced_exit", signal=name)
            # At once, as asked: no cleanup; the database stays consistent
            # because every commit is a transaction, and recovery resumes.
            os._exit(128 + signum)


async def _serve(args: argparse.Namespace, url: str, settings: RunnerSettings) -> int:
    from cloaca.runtime.engine import Runtime

    signals = _Signals()
    metrics = Metrics()
    with anyio.open_signal_receiver(*SIGNALS) as receiver:
        async with anyio.create_task_group() as tg:
            tg.start_soon(signals.watch, receiver)
            try:
                runtime = Runtime(
                    url,
                    settings,
                    schema=args.schema,
                    shutdown_timeout=args.shutdown_timeout,
                )
            except InvalidIdentifier as exc:
                raise CommandError(str(exc), EXIT_USAGE) from exc
            except StorageError as exc:
                raise CommandError(str(exc), EXIT_USAGE) from exc
            # The store is read through the wrapper from here on (recovery,
            # persistence, intake), so metrics count exactly what is committed.
            runtime.store = cast(Store, MeteredStore(runtime.store, metrics))
            health = HealthServer(metrics, runtime.store)
            try:
                await runtime.__aenter__()
            except StorageError as exc:
                raise storage_failure(exc) from exc
            runtime.add_finish_listener(_log_finished)
            try:
                port = None
                if args.health_port is not None:
                    port = await _start_health(tg, health, args)
                logger.info(
                    "cli.run.ready",
                    db=mask_password(url),
                    schema=args.schema,
                    workflows=registry.workflow_names(),
                    concurrency=settings.max_concurrent_tasks,
                    health_port=port,
                    pid=os.getpid(),
                )
                await signals.first.wait()
                health.stopping = True
                logger.info(
                    "cli.run.stopping",
                    signal=signals.received.name if signals.received else None,
                    shutdown_timeout=args.shutdown_timeout,
                )
                await runtime.stop_intake()
            finally:
                # Not shielded here: aclose() exits the actor system's task
                # group, whose cancel scope must be the innermost one.
                await runtime.aclose()
            logger.info("cli.run.stopped")
            tg.cancel_scope.cancel()
    return EXIT_OK


def _log_finished(outcome: ExecutionOutcome) -> None:
    # The service's record of each execution; also what a supervisor or a test
    # waits for.
    duration = None
    if outcome.completed_at is not None:
        duration = (outcome.completed_at - outcome.started_at).total_seconds()
    log = logger.info if outcome.status == "Completed" else logger.warning
    log(
        "execution.finished",
        execution_id=str(outcome.execution_id),
        workflow=outcome.workflow_name,
        status=outcome.status,
        error=outcome.error,
        origin=outcome.origin,
        duration_seconds=duration,
    )


async def _start_health(
    tg: anyio.abc.TaskGroup, health: HealthServer, args: argparse.Namespace
) -> int:
    try:
        port: int = await tg.start(health.serve, args.health_host, args.health_port)
    except OSError as exc:
        raise CommandError(
            f"cannot serve health checks on {args.health_host}:{args.health_port}: "
            f"{exc.strerror or exc}",
            EXIT_UNAVAILABLE,
        ) from exc
    return port


def run_command(args: argparse.Namespace) -> int:
    """``cloaca run``."""
    url = database_url(args)
    load_workflows(args.workflows)
    return run_async(_serve, args, url, settings_from(args))
