"""The lease work of a leased PostgreSQL batch, done inside its first statement.

A runner's batch creates, renews and releases leases in the statement that writes
its rows; a batch touching an execution whose lease is not the writer's keeps
nothing and raises ``LeaseLost``, also when the same batch would have been refused
for another reason, and also when the touch is a finish (the release checks).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from cloaca.storage import journal as j
from cloaca.storage.leases import LeaseLost, lease_store_for
from cloaca.storage.postgres import PostgresStore
from cloaca.storage.protocol import LeaseStore
from tests.storage import pg_support

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

AT = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stores() -> AsyncIterator[tuple[PostgresStore, LeaseStore, str]]:
    schema = pg_support.new_schema_name("blease")
    store = await pg_support.make_postgres_store(schema)
    try:
        lease_store = lease_store_for(store)
        assert lease_store is not None
        await lease_store.prepare()
        yield store, lease_store, schema
    finally:
        await store.close()
        await pg_support.drop_postgres_schema(schema)


def created(execution_id: uuid.UUID, task_id: uuid.UUID) -> j.ExecutionCreated:
    return j.ExecutionCreated(
        execution_id=execution_id,
        pipeline_name="w",
        pipeline_version="v",
        context_id=None,
        context_json=None,
        tasks=(
            j.NewTask(id=task_id, task_name="public::embedded::w::t", max_attempts=1),
        ),
        at=AT,
    )


def completion(
    execution_id: uuid.UUID, task_id: uuid.UUID, out: uuid.UUID
) -> list[j.JournalEvent]:
    return [
        j.TaskCompleted(task_execution_id=task_id, execution_id=execution_id,
                        task_name="public::embedded::w::t", context_id=out,
                        context_json='{"x":1}', at=AT),
        j.ExecutionFinished(execution_id=execution_id, status="Completed",
                            context_id=out, error=None, at=AT),
    ]  # fmt: skip


async def lease_rows(schema: str) -> dict[uuid.UUID, uuid.UUID]:
    conn = await pg_support.connect()
    try:
        rows = await conn.fetch(
            f'SELECT execution_id, runner_id FROM "{schema}".cloaca_execution_leases'
        )
    finally:
        await conn.close()
    return {
        uuid.UUID(str(r["execution_id"])): uuid.UUID(str(r["runner_id"])) for r in rows
    }


async def test_a_batch_takes_renews_and_releases_its_leases(
    stores: tuple[PostgresStore, LeaseStore, str],
) -> None:
    store, leases, schema = stores
    me = uuid.uuid4()
    (e1, t1), (e2, t2) = (uuid.uuid4(), uuid.uuid4()), (uuid.uuid4(), uuid.uuid4())
    await leases.apply_leased(
        [created(e1, t1), j.TaskStarted(task_execution_id=t1, attempt=1, at=AT)],
        runner_id=me,
        touched=[e1],
        ttl=600,
    )
    assert await lease_rows(schema) == {e1: me}
    # One batch: e1 finishes (its lease goes), e2 is created (its lease comes).
    await leases.apply_leased(
        [*completion(e1, t1, uuid.uuid4()), created(e2, t2)],
        runner_id=me,
        touched=[e1, e2],
        ttl=600,
    )
    assert await lease_rows(schema) == {e2: me}
    finished = await store.get_execution(e1)
    assert finished is not None
    assert (finished.status, finished.context_json) == ("Completed", '{"x":1}')
    # Created and finished in one batch: no lease is left behind.
    e3, t3 = uuid.uuid4(), uuid.uuid4()
    await leases.apply_leased(
        [
            created(e3, t3),
            j.TaskStarted(task_execution_id=t3, attempt=1, at=AT),
            *completion(e3, t3, uuid.uuid4()),
        ],
        runner_id=me,
        touched=[e3],
        ttl=600,
    )
    assert await lease_rows(schema) == {e2: me}
    done = await store.get_execution(e3)
    assert done is not None
    assert done.status == "Completed"


async def test_a_stale_finish_is_refused_and_leaves_the_new_owners_lease(
    stores: tuple[PostgresStore, LeaseStore, str],
) -> None:
    store, leases, schema = stores
    old, new = uuid.uuid4(), uuid.uuid4()
    e, t = uuid.uuid4(), uuid.uuid4()
    await leases.apply_leased(
        [created(e, t), j.TaskStarted(task_execution_id=t, attempt=1, at=AT)],
        runner_id=old,
        touched=[e],
        ttl=600,
    )
    conn = await pg_support.connect()
    try:
        await conn.execute(
            f'UPDATE "{schema}".cloaca_execution_leases SET runner_id = $1', new
        )
    finally:
        await conn.close()
    with pytest.raises(LeaseLost) as info:
        await leases.apply_leased(
            completion(e, t, uuid.uuid4()), runner_id=old, touched=[e], ttl=600
        )
    assert info.value.execution_ids == frozenset({e})
    assert await lease_rows(schema) == {e: new}
    row = await store.get_execution(e)
    assert row is not None
    assert (row.status, [x.status for x in row.tasks]) == ("Pending", ["Running"])


async def test_a_lost_lease_wins_over_a_refused_start_and_nothing_is_kept(
    stores: tuple[PostgresStore, LeaseStore, str],
) -> None:
    store, leases, _ = stores
    me, other = uuid.uuid4(), uuid.uuid4()
    (mine, my_task), (theirs, their_task) = (
        (uuid.uuid4(), uuid.uuid4()),
        (uuid.uuid4(), uuid.uuid4()),
    )
    await leases.apply_leased(
        [created(mine, my_task)], runner_id=me, touched=[], ttl=600
    )
    await leases.apply_leased(
        [
            created(theirs, their_task),
            j.TaskStarted(task_execution_id=their_task, attempt=1, at=AT),
            *completion(theirs, their_task, uuid.uuid4()),
        ],
        runner_id=other,
        touched=[theirs],
        ttl=600,
    )
    # A stale start of the other runner's completed task, beside a start of mine.
    with pytest.raises(LeaseLost) as info:
        await leases.apply_leased(
            [
                j.TaskStarted(task_execution_id=my_task, attempt=1, at=AT),
                j.TaskStarted(task_execution_id=their_task, attempt=1, at=AT),
            ],
            runner_id=me,
            touched=[mine, theirs],
            ttl=600,
        )
    assert info.value.execution_ids == frozenset({theirs})
    row = await store.get_execution(mine)
    assert row is not None
    assert [x.status for x in row.tasks] == ["NotStarted"]
