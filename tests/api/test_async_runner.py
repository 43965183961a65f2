"""AsyncRunner on the caller's loop, and DefaultRunner.execute_async."""

from __future__ import annotations

import anyio
import pytest

import cloaca

from .conftest import Database

pytestmark = pytest.mark.anyio


def define_pair() -> None:
    with cloaca.WorkflowBuilder("pair"):

        @cloaca.task(id="one")
        async def one(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("one", ctx.get("n"))
            return ctx

        @cloaca.task(id="two", dependencies=["one"])
        def two(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("two", ctx.get("one") * 2)
            return ctx


async def test_async_runner_runs_many_concurrent_executions(db: Database) -> None:
    define_pair()
    results: dict[int, cloaca.PipelineResult] = {}
    async with db.async_runner() as runner:

        async def run(n: int) -> None:
            results[n] = await runner.execute("pair", cloaca.Context({"n": n}))

        async with anyio.create_task_group() as tg:
            for n in range(300):
                tg.start_soon(run, n)
    assert len(results) == 300
    assert all(r.status == "Completed" for r in results.values())
    assert all(results[n].final_context.get("two") == 2 * n for n in results)


async def test_async_runner_errors(db: Database) -> None:
    define_pair()
    runner = db.async_runner()
    async with runner:
        with pytest.raises(ValueError, match="Workflow execution failed"):
            await runner.execute("missing", cloaca.Context())
    with pytest.raises(ValueError, match="Workflow execution failed"):
        await runner.execute("pair", cloaca.Context())
    await runner.shutdown()  # idempotent


async def test_default_runner_execute_async_from_a_running_loop(db: Database) -> None:
    define_pair()
    runner = await anyio.to_thread.run_sync(db.runner)
    try:
        result = await runner.execute_async("pair", cloaca.Context({"n": 4}))
        assert result.status == "Completed"
        assert result.final_context.get("two") == 8
    finally:
        await anyio.to_thread.run_sync(runner.shutdown)
