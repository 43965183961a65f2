"""Execution leases on PostgreSQL: claims, take-over, stale completions refused.

Two runtimes share one schema in one process (as two runner processes would share
a database). Lease expiry is forced with SQL instead of waiting for it, and every
wait is on an event or a stored fact, so no test depends on wall-clock timing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import asyncpg
import pytest

import cloaca
from cloaca.config import settings_of
from cloaca.runtime.engine import Runtime
from cloaca.runtime.intake import submit_to_database
from cloaca.storage import journal as j
from cloaca.storage.leases import LeaseLost, lease_store_for
from cloaca.storage.postgres import PostgresStore
from tests.storage import pg_support

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

URL = pg_support.URL
SETTINGS = settings_of(cloaca.DefaultRunnerConfig(enable_cron_scheduling=False))


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = pg_support.new_schema_name("lease")
    try:
        yield name
    finally:
        await pg_support.drop_postgres_schema(name)


async def fetch(schema: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await pg_support.connect()
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def leases(schema: str) -> dict[uuid.UUID, uuid.UUID]:
    rows = await fetch(
        schema, "SELECT execution_id, runner_id FROM cloaca_execution_leases"
    )
    return {
        uuid.UUID(str(r["execution_id"])): uuid.UUID(str(r["runner_id"])) for r in rows
    }


async def expire(schema: str, runner_id: uuid.UUID) -> None:
    """What a dead runner's leases look like once their time is up."""
    await fetch(
        schema,
        "UPDATE cloaca_execution_leases SET expires_at = expires_at - interval '1 day'"
        " WHERE runner_id = $1",
        runner_id,
    )


async def wait_until(predicate: object, *, what: str) -> None:
    """Poll a stored fact (not a duration) until it holds; 10 s safety net."""
    assert callable(predicate)
    with anyio.fail_after(10):
        while not await predicate():
            await anyio.lowlevel.checkpoint()


def runtime(schema: str, *, shutdown_timeout: float = 5.0) -> Runtime:
    # Long leases: nothing expires unless a test expires it.
    return Runtime(
        URL,
        SETTINGS,
        schema=schema,
        lease_ttl=600.0,
        shutdown_timeout=shutdown_timeout,
    )


def define_gated(gate: anyio.Event, started: anyio.Event, runs: list[str]) -> None:
    with cloaca.WorkflowBuilder("leased"):

        @cloaca.task(id="first")
        async def first(ctx: cloaca.Context) -> cloaca.Context:
            runs.append("first")
            ctx.set("first", True)
            return ctx

        @cloaca.task(id="slow", dependencies=["first"])
        async def slow(ctx: cloaca.Context) -> cloaca.Context:
            runs.append("slow")
            if runs.count("slow") == 1:
                started.set()
                await gate.wait()  # the first runner "freezes" here
            ctx.set("slow", True)
            return ctx


async def test_an_execution_is_leased_to_its_creator_and_released_at_its_end(
    schema: str,
) -> None:
    gate, started = anyio.Event(), anyio.Event()
    runs: list[str] = []
    define_gated(gate, started, runs)
    async with runtime(schema) as rt, anyio.create_task_group() as tg:
        outcome: list[object] = []

        async def run() -> None:
            outcome.append(await rt.execute("leased", "{}"))

        tg.start_soon(run)
        await started.wait()
        held = await leases(schema)
        assert list(held.values()) == [rt.runner_id]
        gate.set()
    assert len(outcome) == 1
    assert getattr(outcome[0], "status", None) == "Completed"
    assert await leases(schema) == {}


async def test_a_taken_over_execution_finishes_once_and_the_stale_result_is_refused(
    schema: str,
) -> None:
    gate, started = anyio.Event(), anyio.Event()
    runs: list[str] = []
    define_gated(gate, started, runs)
    async with runtime(schema) as a:
        outcomes: list[object] = []

        async def run_on_a() -> None:
            outcomes.append(await a.execute("leased", '{"n": 1}'))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_on_a)
            await started.wait()  # "slow" is running on A
            (execution_id,) = (await leases(schema)).keys()
            await expire(schema, a.runner_id)  # A froze past its lease
            async with runtime(schema) as b:
                await b.wait_for(execution_id)  # B claims, resets, re-runs, finishes
                gate.set()  # A wakes up and reports its stale result
        # A's caller gets the end B recorded, read from the database.
        [outcome] = outcomes
        assert getattr(outcome, "status", None) == "Completed"
        assert getattr(outcome, "execution_id", None) == execution_id
        final = json.loads(getattr(outcome, "final_context_json", None) or "{}")
        assert final == {"n": 1, "first": True, "slow": True}
    rows = await fetch(
        schema,
        "SELECT status FROM pipeline_executions WHERE id = $1",
        execution_id,
    )
    assert [r["status"] for r in rows] == ["Completed"]
    metadata = await fetch(
        schema,
        "SELECT task_name FROM task_execution_metadata WHERE pipeline_execution_id = $1",
        execution_id,
    )
    assert sorted(r["task_name"].rsplit("::", 1)[1] for r in metadata) == [
        "first",
        "slow",
    ]
    tasks = await fetch(
        schema,
        "SELECT task_name, recovery_attempts FROM task_executions"
        " WHERE pipeline_execution_id = $1",
        execution_id,
    )
    recovered = {
        r["task_name"].rsplit("::", 1)[1]: r["recovery_attempts"] for r in tasks
    }
    assert recovered == {"first": 0, "slow": 1}  # completed tasks are not re-run
    assert runs == ["first", "slow", "slow"]
    assert await leases(schema) == {}


async def test_a_batch_touching_another_runners_execution_writes_nothing(
    schema: str,
) -> None:
    store = await pg_support.make_postgres_store(schema)
    try:
        lease_store = lease_store_for(store)
        assert lease_store is not None
        await lease_store.prepare()
        mine, theirs = uuid.uuid4(), uuid.uuid4()
        at = datetime.now(UTC)
        task = j.NewTask(
            id=uuid.uuid4(), task_name="public::embedded::w::t", max_attempts=1
        )
        created = j.ExecutionCreated(
            execution_id=mine,
            pipeline_name="w",
            pipeline_version="v",
            context_id=None,
            context_json=None,
            tasks=(task,),
            at=at,
        )
        await lease_store.apply_leased([created], runner_id=theirs, touched=[], ttl=600)
        start = j.TaskStarted(task_execution_id=task.id, attempt=1, at=at)
        with pytest.raises(LeaseLost) as info:
            await lease_store.apply_leased(
                [start], runner_id=uuid.uuid4(), touched=[mine], ttl=600
            )
        assert info.value.execution_ids == frozenset({mine})
        assert "another runner took them over" in str(info.value)
        row = await store.get_execution(mine)
        assert row is not None
        assert [t.status for t in row.tasks] == ["NotStarted"]
        await lease_store.apply_leased(
            [start], runner_id=theirs, touched=[mine], ttl=600
        )
        row = await store.get_execution(mine)
        assert row is not None
        assert [t.status for t in row.tasks] == ["Running"]
    finally:
        await store.close()


async def test_claims_skip_live_leases_and_take_expired_ones(schema: str) -> None:
    stores: list[PostgresStore] = []
    try:
        stores.append(await pg_support.make_postgres_store(schema))
        stores.append(await pg_support.make_postgres_store(schema))
        one, two = (lease_store_for(s) for s in stores)
        assert one is not None
        assert two is not None
        await one.prepare()
        registered_workflow = "claimable"
        with cloaca.WorkflowBuilder(registered_workflow):

            @cloaca.task(id="only")
            def only(ctx: cloaca.Context) -> cloaca.Context:
                return ctx

        ids = [
            await submit_to_database(URL, registered_workflow, "{}", schema=schema)
            for _ in range(3)
        ]
        runner_one, runner_two = uuid.uuid4(), uuid.uuid4()
        claim = {
            "statuses": ["Pending"],
            "workflows": [registered_workflow],
            "ttl": 600,
        }
        first = await one.claim(runner_id=runner_one, limit=2, **claim)  # type: ignore[arg-type]
        assert first == ids[:2]  # oldest first, bounded by the limit
        second = await two.claim(runner_id=runner_two, limit=5, **claim)  # type: ignore[arg-type]
        assert second == ids[2:]  # live leases are never taken
        assert await two.claim(runner_id=runner_two, limit=5, **claim) == []  # type: ignore[arg-type]
        await expire(schema, runner_one)
        taken = await two.claim(runner_id=runner_two, limit=5, **claim)  # type: ignore[arg-type]
        assert sorted(taken, key=str) == sorted(ids[:2], key=str)
        lost = await one.heartbeat(runner_id=runner_one, ttl=600, owned=ids[:2])
        assert lost == set(ids[:2])
        assert await two.release(runner_two) == 3
        assert await leases(schema) == {}
    finally:
        for store in stores:
            await store.close()


async def test_graceful_leave_hands_work_to_another_runner_at_once(schema: str) -> None:
    gate, started = anyio.Event(), anyio.Event()
    runs: list[str] = []
    define_gated(gate, started, runs)
    execution_id = await submit_to_database(
        URL, "leased", json.dumps({}), schema=schema
    )
    # A gets a short drain budget: its attempt is blocked and will not finish.
    async with runtime(schema, shutdown_timeout=0.2) as a:
        with anyio.fail_after(10):
            await started.wait()  # A claimed it and is running "slow"
        assert set((await leases(schema)).values()) == {a.runner_id}
    # A left (its attempt was cut short): no lease of A remains, no expiry awaited.
    assert await leases(schema) == {}
    gate.set()
    async with runtime(schema) as b:
        await b.wait_for(execution_id)
    rows = await fetch(
        schema, "SELECT status FROM pipeline_executions WHERE id = $1", execution_id
    )
    assert [r["status"] for r in rows] == ["Completed"]
    assert runs == ["first", "slow", "slow"]


async def test_a_heartbeat_renews_only_the_leases_of_executions_the_runner_drives(
    schema: str,
) -> None:
    store = await pg_support.make_postgres_store(schema)
    try:
        lease_store = lease_store_for(store)
        assert lease_store is not None
        runner, driven, orphan = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        # The orphan: a claim took it, but its answer was lost with the
        # connection, so the runner never learnt it holds it.
        for execution_id in (driven, orphan):
            await fetch(
                schema,
                "INSERT INTO cloaca_execution_leases VALUES"
                " ($1, $2, now() - interval '1 minute', now(), now())",
                execution_id,
                runner,
            )
        assert (
            await lease_store.heartbeat(runner_id=runner, ttl=60, owned=[driven])
            == set()
        )
        rows = await fetch(
            schema,
            "SELECT execution_id, expires_at > now() AT TIME ZONE 'UTC' AS live"
            " FROM cloaca_execution_leases",
        )
        live = {uuid.UUID(str(r["execution_id"])): r["live"] for r in rows}
        assert live == {driven: True, orphan: False}  # it runs out: claimable again
    finally:
        await store.close()
