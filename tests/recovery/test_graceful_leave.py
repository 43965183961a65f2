"""A graceful shutdown cuts attempts short without counting them as crashes.

Rolling restarts stop runners while tasks run. The next runner must run the
interrupted attempt again (at-least-once) without charging it to the task's
attempt budget: only a crash the task may have caused counts (API.md 4.14).
Here a task with a budget of one attempt is interrupted by two graceful
shutdowns in a row and still completes on the third runner; counted as crashes,
it would have been failed ``ABANDONED`` on the third start.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import cloaca
from cloaca.config import settings_of
from cloaca.runtime.engine import Runtime
from tests.storage import pg_support

pytestmark = pytest.mark.anyio

SETTINGS = settings_of(cloaca.DefaultRunnerConfig(enable_cron_scheduling=False))
INTERRUPTIONS = 2


class Rolling:
    """first -> slow; ``slow`` hangs until the runner stops, ``INTERRUPTIONS`` times."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = anyio.Event()
        with cloaca.WorkflowBuilder("rolling"):
            cloaca.task(id="first")(self._first)
            cloaca.task(id="slow", dependencies=["first"])(self._slow)

    @staticmethod
    def _first(ctx: cloaca.Context) -> cloaca.Context:
        ctx.set("first", True)
        return ctx

    async def _slow(self, ctx: cloaca.Context) -> cloaca.Context:
        self.runs += 1
        if self.runs <= INTERRUPTIONS:
            self.started.set()
            await anyio.sleep_forever()  # until the shutdown cancels it
        ctx.set("slow", True)
        return ctx


async def roll(url: str, schema: str | None) -> tuple[uuid.UUID, Rolling]:
    flow = Rolling()
    execution_id: uuid.UUID | None = None
    for _ in range(INTERRUPTIONS):
        flow.started = anyio.Event()
        # A short drain: the hanging attempt is cut off at the deadline.
        async with Runtime(url, SETTINGS, schema=schema, shutdown_timeout=0.2) as rt:
            if execution_id is None:
                execution_id = await rt.submit("rolling", "{}")
            with anyio.fail_after(20):
                await flow.started.wait()
    assert execution_id is not None
    async with Runtime(url, SETTINGS, schema=schema) as rt:
        with anyio.fail_after(20):
            await rt.wait_for(execution_id)
    return execution_id, flow


async def test_sqlite_interrupted_attempts_are_requeued_uncounted(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "rolling.db"
    execution_id, flow = await roll(f"sqlite:///{db_file}", None)
    assert flow.runs == INTERRUPTIONS + 1
    with sqlite3.connect(db_file) as conn:
        status = conn.execute(
            "SELECT status FROM pipeline_executions WHERE id = ?",
            (execution_id.bytes,),
        ).fetchone()
        tasks = conn.execute(
            "SELECT task_name, status, recovery_attempts FROM task_executions"
        ).fetchall()
        resets = conn.execute(
            "SELECT count(*) FROM recovery_events WHERE recovery_type = 'task_reset'"
        ).fetchone()
    assert status == ("Completed",)
    assert sorted((n.rsplit("::", 1)[1], s, r) for n, s, r in tasks) == [
        ("first", "Completed", 0),
        ("slow", "Completed", 0),
    ]
    assert resets == (INTERRUPTIONS,)  # each hand-back is on record


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = pg_support.new_schema_name("roll")
    try:
        yield name
    finally:
        await pg_support.drop_postgres_schema(name)


@pytest.mark.postgres
async def test_postgres_interrupted_attempts_are_requeued_uncounted(
    schema: str,
) -> None:
    execution_id, flow = await roll(pg_support.URL, schema)
    assert flow.runs == INTERRUPTIONS + 1
    conn = await pg_support.connect()
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        status = await conn.fetchval(
            "SELECT status FROM pipeline_executions WHERE id = $1", execution_id
        )
        tasks = await conn.fetch(
            "SELECT task_name, status, recovery_attempts FROM task_executions"
        )
        leases = await conn.fetchval("SELECT count(*) FROM cloaca_execution_leases")
    finally:
        await conn.close()
    assert status == "Completed"
    assert sorted(
        (r["task_name"].rsplit("::", 1)[1], r["status"], r["recovery_attempts"])
        for r in tasks
    ) == [("first", "Completed", 0), ("slow", "Completed", 0)]
    assert leases == 0
