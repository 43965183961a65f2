"""The journal survives database failures: retries, then a supervised rebuild.

A failed commit is retried with backoff on the runtime's clock; a database that
keeps failing crashes Persistence, the root supervisor restarts it and the
scheduler (rest_for_one), and the scheduler rebuilds its executions from what
the database holds. Every execution still finishes, no acknowledged result is
lost and no completion is recorded twice. The clock is a ManualClock that jumps
whenever the runtime waits, so backoff costs no real time.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import cloaca
from actors import ManualClock
from cloaca.config import settings_of
from cloaca.runtime.engine import Runtime
from cloaca.storage import open_store

from .faulty_store import FaultyStore

pytestmark = pytest.mark.anyio


def define(runs: list[str]) -> None:
    with cloaca.WorkflowBuilder("journalled"):

        @cloaca.task(id="a")
        def a(ctx: cloaca.Context) -> cloaca.Context:
            runs.append("a")
            ctx.set("a", ctx.get("n"))
            return ctx

        @cloaca.task(id="b", dependencies=["a"])
        def b(ctx: cloaca.Context) -> cloaca.Context:
            runs.append("b")
            ctx.set("b", ctx.get("a") + 1)
            return ctx


async def run_with(store: FaultyStore, count: int) -> list[object]:
    clock = ManualClock(wall_ms=1_800_000_000_000)
    settings = settings_of(cloaca.DefaultRunnerConfig())
    outcomes: list[object] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.autojump)
        async with Runtime("unused", settings, clock=clock, store=store) as runtime:

            async def one(n: int) -> None:
                outcomes.append(await runtime.execute("journalled", f'{{"n": {n}}}'))

            async with anyio.create_task_group() as inner:
                for n in range(count):
                    inner.start_soon(one, n)
        tg.cancel_scope.cancel()
    return outcomes


def completions(url: str) -> dict[str, int]:
    import sqlite3

    path = url.removeprefix("sqlite://")
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT status, COUNT(*) FROM pipeline_executions GROUP BY status"
        ).fetchall()
        metadata = conn.execute(
            "SELECT COUNT(*) FROM task_execution_metadata"
        ).fetchone()
    return {**dict(rows), "metadata": metadata[0]}


async def test_transient_commit_failures_are_retried(tmp_path: Path) -> None:
    runs: list[str] = []
    define(runs)
    url = "sqlite://" + str(tmp_path / "retry.db")
    store = FaultyStore(open_store(url), fail_before=[2, 3, 5])
    outcomes = await run_with(store, 20)
    assert store.injected == 3
    assert len(outcomes) == 20
    assert all(o.status == "Completed" for o in outcomes)  # type: ignore[attr-defined]
    assert completions(url) == {"Completed": 20, "metadata": 40}
    assert runs.count("a") == 20
    assert runs.count("b") == 20


async def test_a_database_that_keeps_failing_crashes_persistence_and_is_rebuilt(
    tmp_path: Path,
) -> None:
    runs: list[str] = []
    define(runs)
    url = "sqlite://" + str(tmp_path / "rebuild.db")
    # Calls 4-8 all fail: more than one batch's retries, so Persistence crashes.
    store = FaultyStore(open_store(url), fail_before=range(4, 9))
    outcomes = await run_with(store, 10)
    statuses = sorted(getattr(o, "status", "lost") for o in outcomes)
    assert store.injected == 5
    stored = completions(url)
    # Executions whose creation never became durable are reported lost, never
    # half-run; every stored one finished, each task completion recorded once.
    assert stored.get("Completed", 0) == statuses.count("Completed")
    assert stored["metadata"] == 2 * stored["Completed"]
    assert "Pending" not in stored
    assert "Running" not in stored


async def test_commit_cut_off_after_it_landed_records_nothing_twice(
    tmp_path: Path,
) -> None:
    runs: list[str] = []
    define(runs)
    url = "sqlite://" + str(tmp_path / "cutoff.db")
    store = FaultyStore(open_store(url), fail_after_commit=[3])
    outcomes = await run_with(store, 10)
    assert store.injected == 1
    assert len(outcomes) == 10
    assert all(o.status == "Completed" for o in outcomes)  # type: ignore[attr-defined]
    assert completions(url) == {"Completed": 10, "metadata": 20}
