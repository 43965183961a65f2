"""PostgreSQL store errors: unreachable servers, lost connections, atomicity, replay."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import anyio.lowlevel
import asyncpg
import pytest

from cloaca.storage import journal as j
from cloaca.storage.errors import Conflict, StorageError, StorageUnavailable
from cloaca.storage.pg_url import parse_postgres_url
from cloaca.storage.postgres import PostgresStore
from cloaca.storage.urls import InvalidDatabaseUrl
from tests.storage import pg_support as pg

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

AT = datetime(2026, 12, 3, 20, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def conn() -> AsyncIterator[asyncpg.Connection]:
    connection = await pg.connect()
    yield connection
    await connection.close()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = pg.new_schema_name("err")
    yield name
    await pg.drop_postgres_schema(name)


def one_task_workflow(
    at: datetime = AT,
) -> tuple[uuid.UUID, uuid.UUID, list[j.JournalEvent]]:
    execution_id, task_id, output_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    name = "public::embedded::wf::only"
    entries: list[j.JournalEvent] = [
        j.ExecutionCreated(execution_id=execution_id, pipeline_name="wf",
                           pipeline_version="fp", context_id=None, context_json=None,
                           tasks=(j.NewTask(id=task_id, task_name=name,
                                            max_attempts=1),), at=at),
        j.TaskReady(task_execution_id=task_id, at=at),
        j.TaskStarted(task_execution_id=task_id, attempt=1, at=at),
        j.TaskCompleted(task_execution_id=task_id, execution_id=execution_id,
                        task_name=name, context_id=output_id,
                        context_json='{"done":true}', at=at),
        j.ExecutionFinished(execution_id=execution_id, status="Completed",
                            context_id=output_id, error=None, at=at),
    ]  # fmt: skip
    return execution_id, task_id, entries


async def test_unreachable_server_names_host_port_database_masked() -> None:
    store = PostgresStore("postgresql://someone:sekrit@127.0.0.1:1/appdb")
    with pytest.raises(StorageUnavailable) as caught:
        await store.open()
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "'appdb'" in message
    assert "someone:***@" in message
    assert "sekrit" not in message
    assert caught.value.url == "postgresql://someone:***@127.0.0.1:1/appdb"


async def test_unknown_role_is_unavailable() -> None:
    store = PostgresStore(f"postgresql://no_such_role_x:pw@{pg.HOST}:{pg.PORT}/test")
    with pytest.raises(StorageUnavailable, match="no_such_role_x") as caught:
        await store.open()
    assert ":pw@" not in str(caught.value)


async def test_missing_database_is_unavailable_and_named() -> None:
    missing = "no_such_db_" + uuid.uuid4().hex[:8]
    store = PostgresStore(f"postgresql://postgres@{pg.HOST}:{pg.PORT}/{missing}")
    with pytest.raises(StorageUnavailable, match=missing):
        await store.open()


@pytest.mark.parametrize(
    "url",
    ["postgres://[bad", "postgresql://h:notaport/db", "mysql://h/db",
     "postgresql://h/db?sslmode=sometimes", "postgresql://h/db?connect_timeout=-3",
     "postgresql://h/a/b"],
)  # fmt: skip
def test_invalid_urls_are_refused_at_construction(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl):
        PostgresStore(url)


def test_url_options_are_parsed() -> None:
    target = parse_postgres_url(
        "postgres://u:p%40ss@db.example:6543/cloacina"
        "?sslmode=require&connect_timeout=2.5&application_name=me&unknown=1"
    )
    assert (target.host, target.port, target.database) == (
        "db.example",
        6543,
        "cloacina",
    )
    assert (target.user, target.password) == ("u", "p@ss")
    assert target.ssl == "require"
    assert target.connect_timeout == 2.5
    assert target.server_settings == {"application_name": "me"}
    assert target.display_url.startswith("postgres://u:***@db.example:6543/cloacina")


def test_store_refuses_a_pool_of_zero() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore(pg.URL, pool_size=0)


async def test_apply_before_open_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="not open"):
        await PostgresStore(pg.URL).apply(one_task_workflow()[2])


async def test_failing_entry_leaves_nothing(
    conn: asyncpg.Connection, schema: str
) -> None:
    store = await pg.make_postgres_store(schema)
    try:
        execution_id, _, entries = one_task_workflow()
        bogus = j.ExecutionFinished(
            execution_id=execution_id, status="Bogus", context_id=None, error=None,
            at=AT,
        )  # fmt: skip
        with pytest.raises(StorageError, match="pipeline_executions_status_check"):
            await store.apply([*entries[:-1], bogus])
        assert await store.get_execution(execution_id) is None
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".contexts') == 0
    finally:
        await store.close()


async def test_unique_violation_is_a_conflict_naming_the_constraint(
    schema: str,
) -> None:
    store = await pg.make_postgres_store(schema)
    execution_id, a, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    name = "public::embedded::wf::same"
    try:
        await store.apply([
            j.ExecutionCreated(execution_id=execution_id, pipeline_name="wf",
                               pipeline_version="fp", context_id=None,
                               context_json=None,
                               tasks=(j.NewTask(id=a, task_name=name, max_attempts=1),
                                      j.NewTask(id=b, task_name=name, max_attempts=1)),
                               at=AT),
            j.TaskCompleted(task_execution_id=a, execution_id=execution_id,
                            task_name=name, context_id=None, context_json=None, at=AT),
        ])  # fmt: skip
        with pytest.raises(
            Conflict,
            match="task_execution_metadata_pipeline_execution_id_task_name_key",
        ):
            await store.apply([
                j.TaskCompleted(task_execution_id=b, execution_id=execution_id,
                                task_name=name, context_id=None, context_json=None,
                                at=AT),
            ])  # fmt: skip
    finally:
        await store.close()


async def test_reapplying_a_committed_batch_is_a_conflict_and_changes_nothing(
    conn: asyncpg.Connection, schema: str
) -> None:
    store = await pg.make_postgres_store(schema)
    try:
        _, _, batch = one_task_workflow()
        await store.apply(batch)
        tables = ["contexts", "pipeline_executions", "task_executions",
                  "task_execution_metadata"]  # fmt: skip
        query = "SELECT t::text FROM {} AS t ORDER BY 1"
        before = {t: await conn.fetch(query.format(f'"{schema}".{t}')) for t in tables}
        # The batch's rows are written by one statement: either new row's key.
        with pytest.raises(Conflict, match=r"(pipeline|task)_executions_pkey"):
            await store.apply(batch)
        after = {t: await conn.fetch(query.format(f'"{schema}".{t}')) for t in tables}
        assert after == before
    finally:
        await store.close()


async def test_unknown_row_and_naive_time_are_refused(schema: str) -> None:
    store = await pg.make_postgres_store(schema)
    try:
        unknown = uuid.uuid4()
        with pytest.raises(StorageError, match=str(unknown)) as caught:
            await store.apply(
                [j.TaskFailed(task_execution_id=unknown, error="x", at=AT)]
            )
        assert store.display_url in str(caught.value)
        naive = datetime(2026, 12, 3, 20, 0)
        with pytest.raises(StorageError, match="naive"):
            await store.apply([j.TaskReady(task_execution_id=unknown, at=naive)])
    finally:
        await store.close()


async def _store_pids(conn: asyncpg.Connection, application_name: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
        application_name,
    )
    return [r[0] for r in rows]


# A pool of one has no journal connection of its own; a larger one keeps one.
@pytest.mark.parametrize("pool_size", [1, 3])
async def test_connection_killed_mid_batch_is_unavailable_then_retry_succeeds(
    conn: asyncpg.Connection, schema: str, pool_size: int
) -> None:
    app = "cloaca-kill-" + uuid.uuid4().hex[:8]
    store = PostgresStore(
        f"{pg.URL}?application_name={app}", pool_size=pool_size, schema=schema
    )
    await store.open()
    try:
        first_id, _, first = one_task_workflow()
        await store.apply(first[:1])
        # Hold the execution row so that the store's batch blocks inside its
        # transaction, then terminate the store's backend while it waits.
        locker = await pg.connect()
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute(
                f'SELECT 1 FROM "{schema}".pipeline_executions '
                "WHERE id = $1 FOR UPDATE",
                first_id,
            )
            failure: list[BaseException] = []

            async def blocked_apply() -> None:
                try:
                    await store.apply(first[1:])
                except StorageError as exc:
                    failure.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(blocked_apply)
                with anyio.fail_after(10):
                    while not await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE "
                        "application_name = $1 AND wait_event_type = 'Lock'",
                        app,
                    ):
                        await anyio.lowlevel.checkpoint()
                for pid in await _store_pids(conn, app):
                    assert await conn.fetchval(
                        "SELECT pg_terminate_backend($1, 5000)", pid
                    )
            await tx.rollback()
        finally:
            await locker.close()
        assert len(failure) == 1
        assert isinstance(failure[0], StorageUnavailable)
        assert "lost the PostgreSQL connection" in str(failure[0])
        # The runtime retries the same batch; the pool reconnects.
        await store.apply(first[1:])
        execution = await store.get_execution(first_id)
        assert execution is not None
        assert execution.status == "Completed"
        assert [t.status for t in execution.tasks] == ["Completed"]
        second_id, _, second = one_task_workflow()
        await store.apply(second)
        assert await store.get_execution(second_id) is not None
    finally:
        # pool.close() waits for every connection taken from the pool: a journal
        # connection that was never given back would hang it.
        with anyio.fail_after(10):
            await store.close()


async def test_pool_recovers_after_all_backends_are_terminated(
    conn: asyncpg.Connection, schema: str
) -> None:
    app = "cloaca-killall-" + uuid.uuid4().hex[:8]
    store = PostgresStore(
        f"{pg.URL}?application_name={app}", pool_size=3, schema=schema
    )
    await store.open()
    try:
        pids = await _store_pids(conn, app)
        assert pids
        for pid in pids:
            assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        execution_id, _, batch = one_task_workflow()
        try:
            await store.apply(batch)
        except StorageUnavailable:
            # The pool may hand out a connection whose death it has not noticed
            # yet: the error is retryable and the retry must succeed.
            await store.apply(batch)
        execution = await store.get_execution(execution_id)
        assert execution is not None
        assert execution.status == "Completed"
        assert set(await _store_pids(conn, app)).isdisjoint(pids)
    finally:
        await store.close()


async def test_application_name_and_utc_session_reach_the_server(
    conn: asyncpg.Connection, schema: str
) -> None:
    app = "cloaca-app-" + uuid.uuid4().hex[:8]
    store = PostgresStore(
        f"{pg.URL}?application_name={app}", pool_size=1, schema=schema
    )
    await store.open()
    try:
        assert len(await _store_pids(conn, app)) == 1
    finally:
        await store.close()
    assert await _store_pids(conn, app) == []
