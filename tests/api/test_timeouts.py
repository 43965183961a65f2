"""Task and pipeline timeouts (API.md 4.8 with section 0 item 7).

``task_timeout_seconds`` is a whole number of seconds, so these tests take about a
second each: the attempts are stopped by the real deadline, nothing sleeps to wait.
"""

from __future__ import annotations

import threading

import anyio
import pytest

import cloaca

from .conftest import Database


def quick_timeouts(**fields: object) -> cloaca.DefaultRunnerConfig:
    config = cloaca.DefaultRunnerConfig(task_timeout_seconds=1, **fields)  # type: ignore[arg-type]
    return config


def test_async_task_over_its_timeout_is_cancelled_and_fails(db: Database) -> None:
    cancelled = threading.Event()
    with cloaca.WorkflowBuilder("slow_async"):

        @cloaca.task(id="slow", retry_attempts=1)
        async def slow(ctx: cloaca.Context) -> cloaca.Context:
            try:
                await anyio.Event().wait()  # never set: only the timeout ends it
            except anyio.get_cancelled_exc_class():
                cancelled.set()
                raise
            return ctx

    with db.runner(quick_timeouts()) as runner:
        result = runner.execute("slow_async", cloaca.Context())
    assert result.status == "Failed"
    error = result.task_results["slow"].error or ""
    assert "timeout" in error.lower()
    assert cancelled.is_set()


def test_sync_task_over_its_timeout_fails_and_late_result_is_discarded(
    db: Database,
) -> None:
    release = threading.Event()
    successes: list[str] = []

    def on_success(task_id: str, ctx: cloaca.Context) -> None:
        successes.append(task_id)

    with cloaca.WorkflowBuilder("slow_sync"):

        @cloaca.task(id="slow", retry_attempts=1, on_success=on_success)
        def slow(ctx: cloaca.Context) -> cloaca.Context:
            release.wait(30)
            return ctx

    with db.runner(quick_timeouts()) as runner:
        result = runner.execute("slow_sync", cloaca.Context())
        release.set()
    assert result.status == "Failed"
    assert "timeout" in (result.task_results["slow"].error or "").lower()
    assert successes == []


def test_timeouts_are_transient_and_retried(db: Database) -> None:
    calls: list[int] = []
    with cloaca.WorkflowBuilder("retry_timeout"):

        @cloaca.task(
            id="sometimes_slow",
            retry_attempts=2,
            retry_condition="transient",
            retry_delay_ms=1,
        )
        async def sometimes_slow(ctx: cloaca.Context) -> cloaca.Context:
            calls.append(1)
            if len(calls) == 1:
                await anyio.Event().wait()
            ctx.set("done", True)
            return ctx

    with db.runner(quick_timeouts()) as runner:
        result = runner.execute("retry_timeout", cloaca.Context())
    assert result.status == "Completed"
    assert len(calls) == 2


def test_pipeline_timeout_raises_and_the_execution_keeps_running(db: Database) -> None:
    release = threading.Event()
    finished = threading.Event()
    with cloaca.WorkflowBuilder("long_pipeline"):

        @cloaca.task(id="wait")
        def wait(ctx: cloaca.Context) -> cloaca.Context:
            release.wait(30)
            finished.set()
            return ctx

    config = cloaca.DefaultRunnerConfig()
    config.pipeline_timeout_seconds = 1
    with db.runner(config) as runner:
        with pytest.raises(ValueError) as info:
            runner.execute("long_pipeline", cloaca.Context())
        assert str(info.value) == "Workflow execution failed: Pipeline timeout after 1s"
        assert isinstance(info.value, cloaca.WorkflowTimeoutError)
        release.set()
        assert finished.wait(30)
