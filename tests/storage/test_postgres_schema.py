"""PostgreSQL layout: fresh schemas, the 0.3.1 fixture, concurrent openers, refusals."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import anyio
import asyncpg
import pytest

from cloaca.storage import journal as j, pg_migrate
from cloaca.storage.errors import SchemaMismatch
from cloaca.storage.identifiers import InvalidIdentifier
from cloaca.storage.migrate import Migration, load_migrations
from cloaca.storage.postgres import PostgresStore
from tests.storage import pg_support as pg

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

VERSIONS = ["000", "001", "002", "003", "004", "005", "006", "007", "008", "009"]
OURS = ["cloaca_0001", "cloaca_0002", "cloaca_0003"]
"""cloaca's own additive migrations (SCHEMA.md 9), in order."""
TABLES = [
    "__diesel_schema_migrations",
    "contexts",
    "cron_executions",
    "cron_schedules",
    "pipeline_executions",
    "recovery_events",
    "task_execution_metadata",
    "task_executions",
    "trigger_executions",
    "trigger_schedules",
    "workflow_packages",
    "workflow_registry",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def conn() -> AsyncIterator[asyncpg.Connection]:
    connection = await pg.connect()
    yield connection
    await connection.close()


@pytest.fixture
async def schemas() -> AsyncIterator[list[str]]:
    """Names handed out to a test; every one is dropped afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        await pg.drop_postgres_schema(name)


def fresh(schemas: list[str], prefix: str = "t") -> str:
    name = pg.new_schema_name(prefix)
    schemas.append(name)
    return name


async def versions(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        'SELECT version FROM "' + schema + '".__diesel_schema_migrations ORDER BY 1'
    )
    return [r[0] for r in rows]


async def all_rows(conn: asyncpg.Connection, schema: str) -> dict[str, list[str]]:
    snapshot = {}
    for table in TABLES:
        rows = await conn.fetch(
            f'SELECT t::text FROM "{schema}".{table} AS t ORDER BY 1'
        )
        snapshot[table] = [r[0] for r in rows]
    return snapshot


async def test_fresh_schema_has_exactly_the_fixture_objects(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    ours, theirs = fresh(schemas, "ours"), fresh(schemas, "fx")
    store = await pg.make_postgres_store(ours)
    await store.close()
    await pg.load_fixture(theirs)

    mine, additions = pg.split_cloaca_objects(await pg.catalogue(conn, ours))
    assert mine == await pg.catalogue(conn, theirs)
    assert [name for name, _ in mine["tables"]] == TABLES
    assert [f[0] for f in mine["functions"]] == ["soft_delete", "update_timestamp"]
    # cloaca's own additive migrations (SCHEMA.md 9): the lease table, then the
    # task offers and the runner table, nothing else.
    assert [table for table, _ in additions["tables"]] == [
        "cloaca_execution_leases",
        "cloaca_runners",
        "cloaca_task_offers",
    ]
    assert await versions(conn, ours) == [*VERSIONS, *OURS]
    # The CHECKs are spelt exactly as in the dump of Cloacina's own schema (the
    # loaded copy deparses them differently, hence the normalisation above).
    dump = pg.FIXTURE_DUMP.read_text(encoding="utf-8")
    checks = await conn.fetch(
        "SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "JOIN pg_namespace n ON n.oid = k.connamespace "
        "WHERE n.nspname = $1 AND k.contype = 'c'",
        ours,
    )
    assert len(checks) == 7
    for (definition,) in checks:
        assert definition in dump


async def test_run_on_is_utc_and_only_version_is_inserted(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas)
    before = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')")
    await (await pg.make_postgres_store(name)).close()
    after = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')")
    run_on = await conn.fetch(f'SELECT run_on FROM "{name}".__diesel_schema_migrations')
    assert len(run_on) == 10 + len(OURS)  # Cloacina's 000-009 and ours
    assert all(before <= r[0] <= after for r in run_on)


async def test_reopening_creates_nothing(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas)
    await (await pg.make_postgres_store(name)).close()
    first = await conn.fetch(
        f'SELECT version, run_on FROM "{name}".__diesel_schema_migrations'
    )
    await (await pg.make_postgres_store(name)).close()
    again = await conn.fetch(
        f'SELECT version, run_on FROM "{name}".__diesel_schema_migrations'
    )
    assert first == again


async def test_concurrent_openers_of_one_new_schema_all_succeed(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas)
    stores = [PostgresStore(pg.URL, pool_size=1, schema=name) for _ in range(6)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    for store in stores:
        await store.close()
    assert await versions(conn, name) == [*VERSIONS, *OURS]
    tables = await conn.fetchval(
        "SELECT count(*) FROM pg_tables WHERE schemaname = $1", name
    )
    assert tables == len(TABLES) + 3  # and cloaca's lease, offer and runner tables


async def test_schema_name_is_folded_and_tables_live_only_there(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas)
    store = PostgresStore(pg.URL, pool_size=1, schema=name.upper())
    assert store.schema == name
    await store.open()
    at = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    execution_id = uuid.uuid4()
    await store.apply(
        [j.ExecutionCreated(execution_id=execution_id, pipeline_name="wf",
                            pipeline_version="fp", context_id=None,
                            context_json=None, tasks=(), at=at)]
    )  # fmt: skip
    await store.close()
    found = await conn.fetchval(
        f'SELECT count(*) FROM "{name}".pipeline_executions WHERE id = $1',
        execution_id,
    )
    assert found == 1


@pytest.mark.parametrize(
    "bad",
    ["", 'a"b', "x; DROP SCHEMA public", "public", "PUBLIC", "pg_catalog",
     "Information_Schema", "pg_temp", "a" * 64, "1abc", "tënant", "a-b", "a b"],
)  # fmt: skip
def test_hostile_schema_names_are_refused_before_any_connection(bad: str) -> None:
    # Port 1 is closed: were a connection attempted, the error would differ.
    with pytest.raises(InvalidIdentifier):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", schema=bad)


def test_longest_valid_schema_name_is_accepted() -> None:
    store = PostgresStore(pg.URL, schema="_" + "A" * 62)
    assert store.schema == "_" + "a" * 62


async def test_partial_layout_is_refused_and_left_untouched(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas)
    await conn.execute(f'CREATE SCHEMA "{name}"')
    await conn.execute(f'CREATE TABLE "{name}".contexts (id uuid PRIMARY KEY)')
    with pytest.raises(SchemaMismatch, match="contexts"):
        await pg.make_postgres_store(name)
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1", name
    )
    assert [t[0] for t in tables] == ["contexts"]


async def test_unknown_newer_version_is_refused(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas)
    await (await pg.make_postgres_store(name)).close()
    await conn.execute(
        f"INSERT INTO \"{name}\".__diesel_schema_migrations (version) VALUES ('010')"
    )
    with pytest.raises(SchemaMismatch, match="010"):
        await pg.make_postgres_store(name)


async def test_missing_version_is_refused(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas)
    await (await pg.make_postgres_store(name)).close()
    await conn.execute(
        f"DELETE FROM \"{name}\".__diesel_schema_migrations WHERE version = '008'"
    )
    with pytest.raises(SchemaMismatch, match="008"):
        await pg.make_postgres_store(name)


async def test_pending_cloaca_migration_is_applied_once_and_recorded(
    conn: asyncpg.Connection, schemas: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = fresh(schemas)
    await (await pg.make_postgres_store(name)).close()
    shipped = load_migrations("postgres")
    extra = Migration(
        version="cloaca_9001",
        filename="cloaca_9001_marker.sql",
        sql="CREATE TABLE cloaca_marker (id uuid PRIMARY KEY);",
    )
    with_extra = dataclasses.replace(shipped, additive=(*shipped.additive, extra))
    monkeypatch.setattr(pg_migrate, "load_migrations", lambda backend: with_extra)
    stores = [PostgresStore(pg.URL, pool_size=1, schema=name) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(store.open)
    for store in stores:
        await store.close()
    assert await versions(conn, name) == [*VERSIONS, *OURS, "cloaca_9001"]
    assert await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{name}.cloaca_marker"
    )


async def test_fixture_opens_with_no_row_changed_and_reads_as_stored(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas, "fx")
    await pg.load_fixture(name)
    before = await all_rows(conn, name)
    store = await pg.make_postgres_store(name)
    try:
        after = await all_rows(conn, name)
        # Not one row changed; the only row added is cloaca's own migration record.
        added = sorted(
            set(after["__diesel_schema_migrations"])
            - set(before["__diesel_schema_migrations"])
        )
        assert [row.split(",")[0] for row in added] == [f"({v}" for v in OURS]
        after["__diesel_schema_migrations"] = [
            row for row in after["__diesel_schema_migrations"] if row not in added
        ]
        assert after == before
        manifest = json.loads(pg.FIXTURE_MANIFEST.read_text(encoding="utf-8"))
        finals = {
            r["start_time"]: r["final_context"] for r in manifest["execute_results"]
        }
        assert await store.load_unfinished() == []
        listed = await store.list_executions()
        assert len(listed) == 6
        assert [e.started_at for e in listed] == sorted(
            (e.started_at for e in listed), reverse=True
        )
        tasks_by_id = {t["id"]: t for t in manifest["task_executions"]}
        for row in manifest["pipeline_executions"]:
            execution = await store.get_execution(uuid.UUID(row["id"]))
            assert execution is not None
            assert execution.pipeline_name == row["pipeline_name"]
            assert execution.pipeline_version == row["pipeline_version"]
            assert execution.status == row["status"] == "Completed"
            assert execution.error_details is None
            assert execution.started_at == parse_naive(row["started_at"])
            assert execution.completed_at == parse_naive(row["completed_at"])
            stored_context = await conn.fetchval(
                f'SELECT value FROM "{name}".contexts WHERE id = $1',
                uuid.UUID(row["context_id"]),
            )
            assert execution.context_json == stored_context
            start = execution.started_at.isoformat()
            if start in finals:  # the five execute() calls; the sixth was a cron fire
                assert json.loads(stored_context) == finals.pop(start)
            for task in execution.tasks:
                stored = tasks_by_id[str(task.id)]
                assert task.execution_id == execution.id
                assert task.task_name == stored["task_name"]
                assert task.status == stored["status"]
                assert task.attempt == stored["attempt"]
                assert task.max_attempts == stored["max_attempts"]
                assert task.last_error == stored["last_error"]
                assert task.retry_at == parse_naive(stored["retry_at"])
                assert task.completed_at == parse_naive(stored["completed_at"])
                assert task.started_at is None
        failing = next(
            r
            for r in manifest["pipeline_executions"]
            if r["pipeline_name"] == "fx_failing"
        )
        execution = await store.get_execution(uuid.UUID(failing["id"]))
        assert execution is not None
        assert json.loads(execution.context_json or "") == {"cleaned": True}
        by_name = {t.task_name.rsplit("::", 1)[1]: t for t in execution.tasks}
        assert by_name["explode"].status == "Failed"
        assert by_name["explode"].output_context_json is None
        assert json.loads(by_name["cleanup"].output_context_json or "") == {
            "cleaned": True
        }
    finally:
        await store.close()


def parse_naive(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


async def test_new_execution_in_fixture_is_stored_with_031_encodings(
    conn: asyncpg.Connection, schemas: list[str]
) -> None:
    name = fresh(schemas, "fx")
    await pg.load_fixture(name)
    store = await pg.make_postgres_store(name)
    # An aware time in another zone: stored as UTC wall-clock time, microseconds kept.
    at = datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=5)))
    utc = datetime(2026, 12, 3, 20, 2, 3, 456789)
    execution_id, task_id, input_id, output_id = (uuid.uuid4() for _ in range(4))
    task_name = "public::embedded::fx_chain3::extract"
    try:
        await store.apply([
            j.ExecutionCreated(execution_id=execution_id, pipeline_name="fx_chain3",
                               pipeline_version="cloaca-fp", context_id=input_id,
                               context_json='{"text":"héllo ✓"}',
                               tasks=(j.NewTask(id=task_id, task_name=task_name,
                                                max_attempts=3),), at=at),
            j.TaskReady(task_execution_id=task_id, at=at),
            j.TaskStarted(task_execution_id=task_id, attempt=1, at=at),
            j.TaskCompleted(task_execution_id=task_id, execution_id=execution_id,
                            task_name=task_name, context_id=output_id,
                            context_json='{"extracted":[1,2,3]}', at=at),
            j.ExecutionFinished(execution_id=execution_id, status="Completed",
                                context_id=output_id, error=None, at=at),
        ])  # fmt: skip
    finally:
        await store.close()
    e = await conn.fetchrow(
        f'SELECT * FROM "{name}".pipeline_executions WHERE id = $1', execution_id
    )
    assert e["status"] == "Completed"
    assert e["context_id"] == output_id
    assert e["started_at"] == e["created_at"] == e["completed_at"] == utc
    assert e["recovery_attempts"] == 0
    t = await conn.fetchrow(
        f'SELECT * FROM "{name}".task_executions WHERE id = $1', task_id
    )
    assert (t["status"], t["attempt"], t["max_attempts"]) == ("Completed", 1, 3)
    assert t["trigger_rules"] == '{"type":"Always"}'
    assert t["task_configuration"] == "{}"
    assert t["started_at"] == t["completed_at"] == t["created_at"] == utc
    values = await conn.fetch(
        f'SELECT id, value, created_at, updated_at FROM "{name}".contexts '
        "WHERE id = ANY($1::uuid[]) ORDER BY value",
        [input_id, output_id],
    )
    assert [(v["value"], v["created_at"], v["updated_at"]) for v in values] == [
        ('{"extracted":[1,2,3]}', utc, utc),
        ('{"text":"héllo ✓"}', utc, utc),
    ]
    m = await conn.fetchrow(
        f'SELECT * FROM "{name}".task_execution_metadata WHERE task_execution_id = $1',
        task_id,
    )
    assert (m["pipeline_execution_id"], m["task_name"], m["context_id"]) == (
        execution_id, task_name, output_id,
    )  # fmt: skip
    assert m["created_at"] == m["updated_at"] == utc
    # The fixture's own 0.3.1 execution rows are still there, untouched.
    assert (
        await conn.fetchval(f'SELECT count(*) FROM "{name}".pipeline_executions') == 7
    )
