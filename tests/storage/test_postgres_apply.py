"""Batch planning and in-batch ordering of the PostgreSQL store's ``apply``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from cloaca.storage import journal as j
from cloaca.storage.errors import Conflict, StorageError
from cloaca.storage.pg_apply import naive_utc, plan_batch
from cloaca.storage.postgres import PostgresStore
from tests.storage import pg_support as pg

T0 = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
NAME0 = "public::embedded::wf::0"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def created(execution_id: uuid.UUID, *task_ids: uuid.UUID) -> j.ExecutionCreated:
    return j.ExecutionCreated(
        execution_id=execution_id, pipeline_name="wf", pipeline_version="fp",
        context_id=None, context_json=None,
        tasks=tuple(j.NewTask(id=t, task_name=f"public::embedded::wf::{i}",
                              max_attempts=3) for i, t in enumerate(task_ids)),
        at=T0,
    )  # fmt: skip


def test_naive_utc_converts_aware_times_and_refuses_naive_ones() -> None:
    aware = datetime(2026, 12, 4, 6, 0, 0, 5, tzinfo=timezone(timedelta(hours=5)))
    assert naive_utc(aware) == datetime(2026, 12, 4, 1, 0, 0, 5)
    assert naive_utc(aware).tzinfo is None
    with pytest.raises(StorageError, match="naive"):
        naive_utc(datetime(2026, 12, 4, 1, 0))


def test_entries_writing_one_row_keep_their_order() -> None:
    e, t = uuid.uuid4(), uuid.uuid4()
    ready = j.TaskReady(task_execution_id=t, at=at(1))
    start1 = j.TaskStarted(task_execution_id=t, attempt=1, at=at(2))
    retry = j.TaskRetryScheduled(task_execution_id=t, attempt=2, retry_at=at(3),
                                 error="boom", at=at(2))  # fmt: skip
    start2 = j.TaskStarted(task_execution_id=t, attempt=2, at=at(3))
    done = j.TaskCompleted(task_execution_id=t, execution_id=e, task_name="x",
                           context_id=None, context_json=None, at=at(4))  # fmt: skip
    finish = j.ExecutionFinished(execution_id=e, status="Completed", context_id=None,
                                 error=None, at=at(5))  # fmt: skip
    make = created(e, t)
    phases = plan_batch([make, ready, start1, retry, start2, done, finish])
    # The first Ready and start of the new task are folded into its insert; its
    # later entries follow each other; the execution row's finish only has to
    # follow its creation.
    assert phases == [[make, ready, start1], [retry, finish], [start2], [done]]


def test_entries_of_different_executions_share_statements() -> None:
    batch: list[j.JournalEvent] = []
    for _ in range(32):
        e, t = uuid.uuid4(), uuid.uuid4()
        batch += [
            created(e, t),
            j.ExecutionRunning(execution_id=e, at=at(1)),
            j.TaskReady(task_execution_id=t, at=at(1)),
            j.TaskStarted(task_execution_id=t, attempt=1, at=at(1)),
        ]
    for _ in range(32):
        e, t, out = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        batch += [
            j.TaskCompleted(task_execution_id=t, execution_id=e, task_name="x",
                            context_id=out, context_json="{}", at=at(2)),
            j.ExecutionFinished(execution_id=e, status="Completed", context_id=out,
                                error=None, at=at(3)),
        ]  # fmt: skip
    phases = plan_batch(batch)
    # New executions are inserted Running with their tasks started; completions
    # and finishes of other executions write other rows: one statement.
    assert phases == [batch]


def test_a_finish_is_never_before_the_completion_that_made_its_context() -> None:
    # The finish writes another row than the task entries, but names the context
    # the completion inserts (a foreign key), so it cannot run before it.
    e, t, out = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    start = j.TaskStarted(task_execution_id=t, attempt=1, at=at(1))
    done = j.TaskCompleted(task_execution_id=t, execution_id=e, task_name="x",
                           context_id=out, context_json="{}", at=at(2))  # fmt: skip
    finish = j.ExecutionFinished(execution_id=e, status="Completed", context_id=out,
                                 error=None, at=at(3))  # fmt: skip
    assert plan_batch([start, done, finish]) == [[start], [done, finish]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store() -> AsyncIterator[tuple[PostgresStore, asyncpg.Connection, str]]:
    name = pg.new_schema_name("apply")
    opened = await pg.make_postgres_store(name)
    conn = await pg.connect()
    try:
        yield opened, conn, name
    finally:
        await conn.close()
        await opened.close()
        await pg.drop_postgres_schema(name)


@pytest.mark.anyio
@pytest.mark.postgres
async def test_retry_within_one_batch_ends_completed_with_second_attempt(
    store: tuple[PostgresStore, asyncpg.Connection, str],
) -> None:
    pg_store, conn, schema = store
    e, t, out = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await pg_store.apply([
        created(e, t),
        j.ExecutionRunning(execution_id=e, at=at(1)),
        j.TaskReady(task_execution_id=t, at=at(1)),
        j.TaskStarted(task_execution_id=t, attempt=1, at=at(1)),
        j.TaskRetryScheduled(task_execution_id=t, attempt=2, retry_at=at(3),
                             error="RuntimeError: first", at=at(2)),
        j.TaskStarted(task_execution_id=t, attempt=2, at=at(3)),
        j.TaskCompleted(task_execution_id=t, execution_id=e, task_name=NAME0,
                        context_id=out, context_json='{"ok":1}', at=at(4)),
        j.ExecutionFinished(execution_id=e, status="Completed", context_id=out,
                            error=None, at=at(5)),
    ])  # fmt: skip
    execution = await pg_store.get_execution(e)
    assert execution is not None
    assert (execution.status, execution.context_json) == ("Completed", '{"ok":1}')
    (task,) = execution.tasks
    assert (task.status, task.attempt, task.last_error) == (
        "Completed", 2, "RuntimeError: first",
    )  # fmt: skip
    assert task.started_at == at(3)
    assert task.retry_at == at(3)
    assert task.completed_at == at(4)
    assert task.output_context_json == '{"ok":1}'
    raw = await conn.fetchrow(
        f'SELECT completed_at, updated_at FROM "{schema}".pipeline_executions '
        "WHERE id = $1",
        e,
    )
    assert tuple(raw) == (naive_utc(at(5)), naive_utc(at(5)))


@pytest.mark.anyio
@pytest.mark.postgres
async def test_failure_skip_reset_and_abandon_write_their_columns(
    store: tuple[PostgresStore, asyncpg.Connection, str],
) -> None:
    pg_store, conn, schema = store
    e, failed, skipped, reset, abandoned = (uuid.uuid4() for _ in range(5))
    await pg_store.apply([created(e, failed, skipped, reset, abandoned)])
    await pg_store.apply([
        j.TaskStarted(task_execution_id=failed, attempt=1, at=at(1)),
        j.TaskFailed(task_execution_id=failed, error="boom", at=at(2)),
        j.TaskSkipped(task_execution_id=skipped, reason="Trigger rules not satisfied",
                      at=at(2)),
        j.TaskStarted(task_execution_id=reset, attempt=1, at=at(1)),
        j.TaskReset(task_execution_id=reset, execution_id=e, task_name="r",
                    recovery_attempt=1, at=at(3)),
        j.TaskStarted(task_execution_id=abandoned, attempt=1, at=at(1)),
        j.TaskAbandoned(task_execution_id=abandoned, execution_id=e, task_name="a",
                        error="ABANDONED: too many recoveries", at=at(4)),
        j.ExecutionFinished(execution_id=e, status="Failed", context_id=None,
                            error="task failed", at=at(5)),
    ])  # fmt: skip
    execution = await pg_store.get_execution(e)
    assert execution is not None
    assert (execution.status, execution.error_details) == ("Failed", "task failed")
    assert execution.context_json is None
    tasks = {t.id: t for t in execution.tasks}
    f = tasks[failed]
    assert (f.status, f.last_error, f.error_details, f.completed_at) == (
        "Failed", "boom", "boom", at(2),
    )  # fmt: skip
    s = tasks[skipped]
    assert (s.status, s.error_details, s.completed_at) == (
        "Skipped", "Trigger rules not satisfied", None,
    )  # fmt: skip
    r = tasks[reset]
    assert (r.status, r.started_at, r.recovery_attempts) == ("Ready", None, 1)
    a = tasks[abandoned]
    assert (a.status, a.error_details, a.last_error) == (
        "Failed", "ABANDONED: too many recoveries", "ABANDONED: too many recoveries",
    )  # fmt: skip
    events = await conn.fetch(
        f'SELECT recovery_type, details, recovered_at FROM "{schema}".recovery_events '
        "ORDER BY recovery_type"
    )
    assert [(ev["recovery_type"], ev["recovered_at"]) for ev in events] == [
        ("task_abandoned", naive_utc(at(4))),
        ("task_reset", naive_utc(at(3))),
    ]
    assert events[1]["details"] == (
        '{"task_name":"r","previous_status":"Running","new_status":"Ready",'
        '"recovery_attempt":1}'
    )
    last_recovery = await conn.fetchval(
        f'SELECT last_recovery_at FROM "{schema}".task_executions WHERE id = $1', reset
    )
    assert last_recovery == naive_utc(at(3))


@pytest.mark.anyio
@pytest.mark.postgres
async def test_start_only_takes_a_ready_or_not_started_task(
    store: tuple[PostgresStore, asyncpg.Connection, str],
) -> None:
    pg_store, _, _ = store
    e, t = uuid.uuid4(), uuid.uuid4()
    await pg_store.apply([
        created(e, t),
        j.TaskStarted(task_execution_id=t, attempt=1, at=at(1)),
        j.TaskCompleted(task_execution_id=t, execution_id=e, task_name="x",
                        context_id=None, context_json=None, at=at(2)),
    ])  # fmt: skip
    # A late duplicate start (another runner, or a replay) must not resurrect it.
    with pytest.raises(Conflict, match=f"{t} is Completed"):
        await pg_store.apply([j.TaskStarted(task_execution_id=t, attempt=1, at=at(3))])
    execution = await pg_store.get_execution(e)
    assert execution is not None
    assert [(x.status, x.started_at) for x in execution.tasks] == [("Completed", at(1))]


@pytest.mark.anyio
@pytest.mark.postgres
async def test_a_start_completion_and_finish_in_one_batch_end_with_the_output(
    store: tuple[PostgresStore, asyncpg.Connection, str],
) -> None:
    pg_store, _, _ = store
    e, t, out = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await pg_store.apply([created(e, t)])
    await pg_store.apply([
        j.TaskStarted(task_execution_id=t, attempt=1, at=at(1)),
        j.TaskCompleted(task_execution_id=t, execution_id=e, task_name=NAME0,
                        context_id=out, context_json='{"done":true}', at=at(2)),
        j.ExecutionFinished(execution_id=e, status="Completed", context_id=out,
                            error=None, at=at(3)),
    ])  # fmt: skip
    execution = await pg_store.get_execution(e)
    assert execution is not None
    assert (execution.status, execution.context_json) == ("Completed", '{"done":true}')
    assert [(x.status, x.output_context_json) for x in execution.tasks] == [
        ("Completed", '{"done":true}'),
    ]  # fmt: skip


@pytest.mark.anyio
@pytest.mark.postgres
async def test_a_refused_start_keeps_nothing_of_a_batch_of_many_executions(
    store: tuple[PostgresStore, asyncpg.Connection, str],
) -> None:
    pg_store, _, _ = store
    done_e, done_t = uuid.uuid4(), uuid.uuid4()
    await pg_store.apply([
        created(done_e, done_t),
        j.TaskStarted(task_execution_id=done_t, attempt=1, at=at(1)),
        j.TaskCompleted(task_execution_id=done_t, execution_id=done_e, task_name="x",
                        context_id=None, context_json=None, at=at(2)),
    ])  # fmt: skip
    fresh = [(uuid.uuid4(), uuid.uuid4()) for _ in range(3)]
    batch: list[j.JournalEvent] = []
    for e, t in fresh:
        batch += [
            created(e, t),
            j.TaskStarted(task_execution_id=t, attempt=1, at=at(3)),
        ]
    batch.append(j.TaskStarted(task_execution_id=done_t, attempt=2, at=at(3)))
    with pytest.raises(Conflict, match=f"{done_t} is Completed"):
        await pg_store.apply(batch)
    for e, _ in fresh:
        assert await pg_store.get_execution(e) is None


@pytest.mark.anyio
@pytest.mark.postgres
async def test_a_new_execution_started_in_its_batch_is_stored_running(
    store: tuple[PostgresStore, asyncpg.Connection, str],
) -> None:
    pg_store, conn, schema = store
    e, t, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await pg_store.apply([
        created(e, t, later),
        j.ExecutionRunning(execution_id=e, at=at(1)),
        j.TaskReady(task_execution_id=t, at=at(1)),
        j.TaskStarted(task_execution_id=t, attempt=1, at=at(2)),
    ])  # fmt: skip
    execution = await pg_store.get_execution(e)
    assert execution is not None
    assert execution.status == "Running"
    assert (execution.started_at, execution.updated_at) == (T0, at(1))
    tasks = {x.id: x for x in execution.tasks}
    assert (tasks[t].status, tasks[t].attempt, tasks[t].started_at) == (
        "Running", 1, at(2),
    )  # fmt: skip
    assert (tasks[t].created_at, tasks[t].updated_at) == (T0, at(2))
    assert (tasks[later].status, tasks[later].started_at) == ("NotStarted", None)
    assert tasks[later].updated_at == T0
    raw = await conn.fetchrow(
        f'SELECT task_configuration, completed_at FROM "{schema}".task_executions '
        "WHERE id = $1",
        t,
    )
    assert tuple(raw) == ("{}", None)


@pytest.mark.anyio
@pytest.mark.postgres
async def test_a_second_start_of_a_new_task_in_its_batch_is_a_conflict(
    store: tuple[PostgresStore, asyncpg.Connection, str],
) -> None:
    pg_store, _, _ = store
    e, t = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(Conflict, match=f"{t} is Running"):
        await pg_store.apply([
            created(e, t),
            j.TaskStarted(task_execution_id=t, attempt=1, at=at(1)),
            j.TaskStarted(task_execution_id=t, attempt=1, at=at(2)),
        ])  # fmt: skip
    assert await pg_store.get_execution(e) is None


@pytest.mark.anyio
@pytest.mark.postgres
async def test_list_executions_filters_and_pages_newest_first(
    store: tuple[PostgresStore, asyncpg.Connection, str],
) -> None:
    pg_store, _, _ = store
    ids = []
    for i in range(5):
        e = uuid.uuid4()
        ids.append(e)
        entry = created(e)
        await pg_store.apply([
            j.ExecutionCreated(execution_id=e, pipeline_name="wf" if i % 2 else "other",
                               pipeline_version="fp", context_id=None,
                               context_json=None, tasks=entry.tasks, at=at(i)),
        ])  # fmt: skip
    newest_first = [e.id for e in await pg_store.list_executions()]
    assert newest_first == ids[::-1]
    assert [e.id for e in await pg_store.list_executions(pipeline_name="wf")] == [
        ids[3], ids[1],
    ]  # fmt: skip
    page = await pg_store.list_executions(limit=2, offset=1)
    assert [e.id for e in page] == [ids[3], ids[2]]
    assert await pg_store.list_executions(status="Completed") == []
    assert len(await pg_store.load_unfinished()) == 5
