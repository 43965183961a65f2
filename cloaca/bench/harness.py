"""The measured part of one benchmark run, as one process sees it.

:func:`measure` opens a runner on a database the coordinator made fresh for it (so
schema creation is outside the measurement), warms up, reports readiness, waits for
the go signal (several processes start together), then runs the workload's share and
returns a :class:`Measurement`: start and end on the system-wide monotonic clock,
per-execution latencies (submit to result), failures, the engine counters (journal
commits, entries, commit time, task attempts and queue wait, all as deltas over the
measured part) and the process's peak RSS. :func:`combine` folds the measurements of
several processes into the figures of one run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import anyio.to_thread
import msgspec

import cloaca
from cloaca import registry
from cloaca.bench.workloads import Workload, define_workflows
from cloaca.runtime.engine import Runtime

__all__ = (
    "Measurement",
    "WorkerSpec",
    "combine",
    "load_user_workflow",
    "measure",
    "percentile",
)

Tick = Callable[[int], None]
"""Progress callback: executions completed so far in the measured part."""

Take = Callable[[], bool]
"""Takes one execution from the run's shared pool; False once the pool is empty."""


class WorkerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What one process of a run does.

    Attributes:
        workload: The workload, with this process's share of ``count`` and
            ``in_flight`` already applied.
        url: The database URL.
        schema: PostgreSQL schema (fresh per run), or None.
        context_json: Input context of every execution (JSON object text).
        cpu_iterations: Loop iterations of the ``cpu`` body (same in every process).
        user_module: Module to import first (the ``user`` workload's workflows).
    """

    workload: Workload
    url: str
    schema: str | None = None
    context_json: str = "{}"
    cpu_iterations: int | None = None
    user_module: str | None = None


class Measurement(msgspec.Struct, kw_only=True):
    """What one process measured (times in seconds on ``time.monotonic``).

    Attributes:
        started: When the measured part began.
        finished: When its last execution returned.
        completed: Executions that ended ``Completed``.
        failed: Executions that ended otherwise.
        latencies_ms: Submit-to-result time of each measured execution.
        first_error: The first failed execution's error message, if any.
        journal_commits: Journal transactions in the measured part.
        journal_entries: Journal entries they wrote.
        commit_seconds: Time spent committing them.
        task_attempts: Task attempts admitted to run.
        queue_waits: First attempts whose queue wait was measured.
        queue_wait_seconds: Their summed dispatch-to-admission time.
        peak_rss_kb: The process's peak resident set size.
        cpu_seconds: CPU time the process used in the measured part (all its
            threads, user and system).
    """

    started: float
    finished: float
    completed: int = 0
    failed: int = 0
    latencies_ms: list[float] = msgspec.field(default_factory=list)
    first_error: str | None = None
    journal_commits: int = 0
    journal_entries: int = 0
    commit_seconds: float = 0.0
    task_attempts: int = 0
    queue_waits: int = 0
    queue_wait_seconds: float = 0.0
    peak_rss_kb: int = 0
    cpu_seconds: float = 0.0


def load_user_workflow(target: str) -> str:
    """Import ``module:name`` and return the registered workflow's name.

    ``name`` is a registered workflow name, or an attribute of the module holding a
    ``cloaca.Workflow`` (e.g. the result of ``WorkflowBuilder.build()``).

    Raises:
        ValueError: ``target`` is not ``module:name``, or names no workflow.
        ImportError: The module cannot be imported.
    """
    module_name, sep, name = target.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"--workflow must be module:name, not {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if registry.get_workflow(name) is not None:
        return name
    value = getattr(module, name, None)
    if isinstance(value, cloaca.Workflow):
        if registry.get_workflow(value.name) is None:
            registry.register_workflow(value.name, value)
        return value.name
    known = ", ".join(sorted(registry.workflow_names())) or "none"
    raise ValueError(
        f"{target!r} names no workflow: importing {module_name!r} registered {known}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, interpolated; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def countdown(count: int) -> Take:
    """A ``take`` that grants ``count`` executions (a process's fixed share)."""
    left = count

    def take() -> bool:
        nonlocal left
        left -= 1
        return left >= 0

    return take


def _counters(runtime: Runtime) -> tuple[int, int, float, int, int, float, float]:
    journal = runtime.journal_stats
    tasks = runtime.task_stats
    return (
        journal.batches,
        journal.entries,
        journal.commit_seconds,
        tasks.attempts,
        tasks.queue_waits,
        tasks.queue_wait_seconds,
        time.process_time(),
    )


def _finish(
    measurement: Measurement,
    before: tuple[int, int, float, int, int, float, float],
    after: tuple[int, int, float, int, int, float, float],
) -> Measurement:
    (
        measurement.journal_commits,
        measurement.journal_entries,
        measurement.commit_seconds,
        measurement.task_attempts,
        measurement.queue_waits,
        measurement.queue_wait_seconds,
        measurement.cpu_seconds,
    ) = (a - b for a, b in zip(after, before, strict=True))  # type: ignore[assignment]
    measurement.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return measurement


def _config(workload: Workload) -> cloaca.DefaultRunnerConfig:
    return cloaca.DefaultRunnerConfig(
        max_concurrent_tasks=workload.max_concurrent_tasks
    )


def _record(measurement: Measurement, result: cloaca.PipelineResult) -> None:
    if result.status == "Completed":
        measurement.completed += 1
    else:
        measurement.failed += 1
        if measurement.first_error is None:
            measurement.first_error = result.error_message or result.status


async def _drive(
    runner: cloaca.AsyncRunner,
    workload: Workload,
    context_json: str,
    count: int,
    measurement: Measurement | None,
    tick: Tick | None,
    take: Take | None = None,
) -> None:
    """Run executions ``workload.in_flight`` at a time.

    ``count`` of them, or with ``take`` as many as the shared pool grants.
    """
    in_flight = max(1, min(workload.in_flight, count))
    another = take if take is not None else countdown(count)
    # execute() copies its context, so one input object serves every execution.
    context = cloaca.Context.from_json(context_json)

    async def lane() -> None:
        while another():
            started = time.monotonic()
            result = await runner.execute(workload.workflow, context)
            if measurement is not None:
                measurement.latencies_ms.append(1000 * (time.monotonic() - started))
                _record(measurement, result)
                if tick is not None:
                    tick(measurement.completed + measurement.failed)

    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(lane)


async def _measure_async(
    spec: WorkerSpec, ready: Callable[[], None], tick: Tick | None, take: Take | None
) -> Measurement:
    workload = spec.workload
    runner = cloaca.AsyncRunner._open(spec.url, _config(workload), spec.schema)
    async with runner:
        if workload.warmup:
            await _drive(
                runner, workload, spec.context_json, workload.warmup, None, None
            )
        await anyio.to_thread.run_sync(ready)
        runtime = runner._runtime
        assert runtime is not None  # open: the runner's runtime is running
        before = _counters(runtime)
        measurement = Measurement(started=time.monotonic(), finished=0.0)
        await _drive(
            runner,
            workload,
            spec.context_json,
            workload.count,
            measurement,
            tick,
            take,
        )
        measurement.finished = time.monotonic()
        return _finish(measurement, before, _counters(runtime))


def _measure_sync(
    spec: WorkerSpec, ready: Callable[[], None], tick: Tick | None, take: Take | None
) -> Measurement:
    workload = spec.workload
    with cloaca.DefaultRunner._open(spec.url, _config(workload), spec.schema) as runner:
        context = cloaca.Context.from_json(spec.context_json)
        for _ in range(workload.warmup):
            runner.execute(workload.workflow, context)
        ready()
        runtime = runner._runtime
        assert runtime is not None  # open: the runner's runtime is running
        before = _counters(runtime)
        measurement = Measurement(started=time.monotonic(), finished=0.0)
        another = take if take is not None else countdown(workload.count)
        while another():
            started = time.monotonic()
            result = runner.execute(workload.workflow, context)
            measurement.latencies_ms.append(1000 * (time.monotonic() - started))
            _record(measurement, result)
            if tick is not None:
                tick(measurement.completed + measurement.failed)
        measurement.finished = time.monotonic()
        return _finish(measurement, before, _counters(runtime))


def measure(
    spec: WorkerSpec,
    ready: Callable[[], None],
    tick: Tick | None = None,
    take: Take | None = None,
) -> Measurement:
    """Run ``spec`` in this process and return what it measured.

    Args:
        spec: The workload share, database and inputs.
        ready: Called once the runner is open and warmed up; returns when the
            measured part may begin (the coordinator's go signal).
        tick: Progress callback, called after each measured execution.
        take: The run's shared pool of executions (several processes): each
            execution is taken from it, so a process that runs faster runs more
            and all finish together. None: run exactly ``spec.workload.count``.
    """
    define_workflows(spec.cpu_iterations)
    if spec.user_module is not None:
        importlib.import_module(spec.user_module)
    if spec.workload.api == "sync":
        return _measure_sync(spec, ready, tick, take)
    return asyncio.run(_measure_async(spec, ready, tick, take))


def combine(workload: Workload, parts: Sequence[Measurement]) -> dict[str, float]:
    """The figures of one run from the measurements of its processes.

    Throughput counts every process's executions over the span from the first
    start to the last finish; percentiles are over all executions; engine counters
    are summed, means are over the sums.
    """
    started = min(part.started for part in parts)
    finished = max(part.finished for part in parts)
    seconds = max(finished - started, 1e-9)
    latencies = [value for part in parts for value in part.latencies_ms]
    completed = sum(part.completed for part in parts)
    failed = sum(part.failed for part in parts)
    commits = sum(part.journal_commits for part in parts)
    entries = sum(part.journal_entries for part in parts)
    commit_seconds = sum(part.commit_seconds for part in parts)
    waits = sum(part.queue_waits for part in parts)
    wait_seconds = sum(part.queue_wait_seconds for part in parts)
    executions = completed + failed
    figures = {
        "executions": float(executions),
        "failed": float(failed),
        "seconds": seconds,
        "workflows_per_s": executions / seconds,
        "mean_ms": statistics.fmean(latencies) if latencies else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "ms_per_step": 1000 * seconds / max(1, executions * workload.steps),
        "peak_rss_mb": max(part.peak_rss_kb for part in parts) / 1024,
        "journal_commits": float(commits),
        "mean_batch_size": entries / commits if commits else 0.0,
        "mean_commit_ms": 1000 * commit_seconds / commits if commits else 0.0,
        "task_attempts": float(sum(part.task_attempts for part in parts)),
        "task_queue_wait_ms": 1000 * wait_seconds / waits if waits else 0.0,
        "cpu_ms_per_workflow": (
            1000 * sum(part.cpu_seconds for part in parts) / max(1, executions)
        ),
    }
    return figures
