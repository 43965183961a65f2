"""PostgreSQL through the runners: URLs, schemas, the 0.3.1 fixture, killed connections."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import anyio
import anyio.lowlevel
import asyncpg
import pytest

import cloaca
from tests.storage.pg_support import (
    FIXTURE_MANIFEST,
    URL,
    connect,
    drop_postgres_schema,
    load_fixture,
    new_schema_name,
)

pytestmark = pytest.mark.postgres


def test_unreachable_server_names_host_and_database_with_password_masked() -> None:
    url = "postgresql://app:s3cret@127.0.0.1:1/orders"
    with pytest.raises(ValueError) as info:
        cloaca.DefaultRunner(url)
    message = str(info.value)
    assert "127.0.0.1" in message
    assert "orders" in message
    assert "s3cret" not in message
    assert isinstance(info.value, cloaca.DatabaseError)


def test_missing_database_is_named() -> None:
    with pytest.raises(ValueError) as info:
        cloaca.DefaultRunner("postgresql://postgres@127.0.0.1:5432/no_such_db_xyz")
    assert "no_such_db_xyz" in str(info.value)


@pytest.mark.parametrize(
    ("url", "schema", "message"),
    [
        (
            "sqlite:///tmp/x.db",
            "tenant",
            "Schema-based multi-tenancy requires PostgreSQL. SQLite does not support "
            "database schemas. Use a PostgreSQL URL like 'postgres://user:pass@host/db'",
        ),
        (URL, "", "Schema name cannot be empty"),
        (
            URL,
            'bad"; DROP SCHEMA public; --',
            "Schema name must contain only alphanumeric characters and underscores",
        ),
        (
            URL,
            "a b",
            "Schema name must contain only alphanumeric characters and underscores",
        ),
    ],
)
def test_with_schema_validation_messages(url: str, schema: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        cloaca.DefaultRunner.with_schema(url, schema)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "schema",
    ["public", "PG_CATALOG", "information_schema", "1tenant", "x" * 64, "tënant"],
)
def test_with_schema_stricter_rules_fail_before_any_sql(schema: str) -> None:
    async def schemas() -> list[str]:
        conn = await connect()
        try:
            rows = await conn.fetch("SELECT nspname FROM pg_namespace ORDER BY 1")
            return [r["nspname"] for r in rows]
        finally:
            await conn.close()

    before = asyncio.run(schemas())
    with pytest.raises(ValueError) as info:
        cloaca.DefaultRunner.with_schema(URL, schema)
    assert str(info.value).startswith("Failed to create DefaultRunner with schema")
    created = set(asyncio.run(schemas())) - set(before)
    # PostgreSQL would have folded and truncated the name it was given.
    assert schema.lower()[:63] not in created


def test_schemas_isolate_executions() -> None:
    with cloaca.WorkflowBuilder("tenant_flow"):

        @cloaca.task(id="mark")
        def mark(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("tenant", ctx.get("who"))
            return ctx

    a, b = new_schema_name("ta"), new_schema_name("tb")
    try:
        with cloaca.DefaultRunner.with_schema(URL, a) as runner_a:
            ra = runner_a.execute("tenant_flow", cloaca.Context({"who": "a"}))
        with cloaca.DefaultRunner.with_schema(URL, b) as runner_b:
            rb = runner_b.execute("tenant_flow", cloaca.Context({"who": "b"}))

        async def ids(schema: str) -> set[str]:
            conn = await connect()
            try:
                rows = await conn.fetch(
                    f'SELECT id FROM "{schema}".pipeline_executions'
                )
                return {str(r["id"]) for r in rows}
            finally:
                await conn.close()

        assert asyncio.run(ids(a)) == {ra.execution_id}
        assert asyncio.run(ids(b)) == {rb.execution_id}
    finally:
        asyncio.run(drop_postgres_schema(a))
        asyncio.run(drop_postgres_schema(b))


def define_fx_chain3() -> None:
    with cloaca.WorkflowBuilder("fx_chain3"):

        @cloaca.task(id="extract")
        def extract(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("extracted", [1, 2, 3])
            return ctx

        @cloaca.task(id="transform", dependencies=["extract"])
        def transform(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("transformed", [v * 10 for v in ctx.get("extracted")])
            return ctx

        @cloaca.task(id="load", dependencies=["transform"])
        def load(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("loaded", sum(ctx.get("transformed")))
            return ctx


async def table_rows(schema: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await connect()
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
            )
        ]
        out = {}
        for table in tables:
            rows = await conn.fetch(f'SELECT * FROM "{schema}"."{table}"')
            out[table] = sorted(tuple(str(v) for v in r.values()) for r in rows)
        return out
    finally:
        await conn.close()


def test_fixture_schema_is_taken_over_by_a_with_schema_runner() -> None:
    schema = new_schema_name("fx")
    asyncio.run(load_fixture(schema))
    try:
        before = asyncio.run(table_rows(schema))
        define_fx_chain3()
        with cloaca.DefaultRunner.with_schema(URL, schema) as runner:
            result = runner.execute("fx_chain3", cloaca.Context({"again": True}))
        assert result.status == "Completed"
        assert result.final_context.get("loaded") == 60
        after = asyncio.run(table_rows(schema))
        for table, rows in before.items():
            if table in ("cron_schedules", "cron_executions"):
                continue  # due fixture schedules may fire after the take-over
            assert set(rows) <= set(after[table]), table
        manifest = json.loads(Path(FIXTURE_MANIFEST).read_text())
        for expected in manifest["pipeline_executions"]:
            assert any(expected["id"] in row for row in after["pipeline_executions"])

        async def stored() -> asyncpg.Record:
            conn = await connect()
            try:
                return await conn.fetchrow(
                    f'SELECT status, started_at FROM "{schema}".pipeline_executions '
                    "WHERE id = $1",
                    uuid.UUID(result.execution_id),
                )
            finally:
                await conn.close()

        row = asyncio.run(stored())
        assert row["status"] == "Completed"
        assert row["started_at"].tzinfo is None  # naive UTC, as 0.3.1 stores it
    finally:
        asyncio.run(drop_postgres_schema(schema))


def define_counting(counts: dict[str, int]) -> None:
    with cloaca.WorkflowBuilder("survives_kills"):

        @cloaca.task(id="first")
        async def first(ctx: cloaca.Context) -> cloaca.Context:
            counts["first"] = counts.get("first", 0) + 1
            await anyio.lowlevel.checkpoint()
            ctx.set("first", True)
            return ctx

        @cloaca.task(id="second", dependencies=["first"])
        async def second(ctx: cloaca.Context) -> cloaca.Context:
            counts["second"] = counts.get("second", 0) + 1
            ctx.set("second", True)
            return ctx


@pytest.mark.anyio
async def test_killed_connections_mid_run_lose_nothing_and_record_nothing_twice() -> (
    None
):
    counts: dict[str, int] = {}
    define_counting(counts)
    schema = new_schema_name("kill")
    total = 150
    results: list[cloaca.PipelineResult] = []
    killed = 0
    try:
        app_name = f"cloaca-{schema}"
        async with cloaca.AsyncRunner.with_schema(
            f"{URL}?application_name={app_name}", schema
        ) as runner:
            reached = {threshold: anyio.Event() for threshold in (10, 40, 80)}

            async def run(n: int) -> None:
                results.append(
                    await runner.execute("survives_kills", cloaca.Context({"n": n}))
                )
                if len(results) in reached:
                    reached[len(results)].set()

            async def killer() -> None:
                nonlocal killed
                admin = await connect()
                try:
                    # Kill the runner's backends while executions are in flight,
                    # each time once a few more results have come back.
                    for threshold in (10, 40, 80):
                        await reached[threshold].wait()
                        # Only this runner's connections: they carry its name.
                        killed += (
                            await admin.fetchval(
                                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE datname = 'test' AND application_name = $1",
                                app_name,
                            )
                            or 0
                        )
                finally:
                    await admin.close()

            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                for n in range(total):
                    tg.start_soon(run, n)

        assert killed > 0
        assert len(results) == total
        assert all(r.status == "Completed" for r in results)

        conn = await connect()
        try:
            statuses = await conn.fetch(
                f'SELECT status, count(*) FROM "{schema}".pipeline_executions GROUP BY status'
            )
            metadata = await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".task_execution_metadata'
            )
            duplicates = await conn.fetchval(
                f'SELECT count(*) FROM (SELECT pipeline_execution_id, task_name FROM "{schema}"'
                ".task_execution_metadata GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
        finally:
            await conn.close()
        assert {r["status"]: r["count"] for r in statuses} == {"Completed": total}
        assert metadata == 2 * total
        assert duplicates == 0
        # Every completed attempt ran at least once; re-runs are bounded by the kills.
        assert counts["first"] >= total
        assert counts["second"] >= total
    finally:
        await drop_postgres_schema(schema)
