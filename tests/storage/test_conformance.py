"""The Store conformance suite: the same tests against every backend.

Each test gets a fresh, opened store (``backend`` in conftest.py) and checks what a
user of the runtime would notice: rows as stored on Cloacina 0.3.1's layout
(SCHEMA.md 5), the round trip through ``apply`` and the readers, the order of
entries within a batch, atomicity of a batch, and error translation.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from cloaca.storage import journal as j
from cloaca.storage.errors import Conflict, StorageError

if TYPE_CHECKING:
    from cloaca.storage.protocol import Store
    from tests.storage.conftest import Backend

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 3, 20, 26, 32, 785487, tzinfo=UTC)
INPUT = '{"fixture":"chain3","text":"héllo ✓","nested":{"a":[1,2.5,null,false],"b":2}}'


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_execution(
    *task_ids: str,
    workflow: str = "fx_chain3",
    context_json: str | None = INPUT,
    when: datetime = T0,
    max_attempts: int = 3,
) -> tuple[j.ExecutionCreated, list[uuid.UUID]]:
    """An ``ExecutionCreated`` with one task per id, and the task row ids."""
    tasks = tuple(
        j.NewTask(
            id=uuid.uuid4(),
            task_name=f"public::embedded::{workflow}::{task_id}",
            max_attempts=max_attempts,
        )
        for task_id in task_ids
    )
    entry = j.ExecutionCreated(
        execution_id=uuid.uuid4(),
        pipeline_name=workflow,
        pipeline_version="cloaca-fp-1",
        context_id=None if context_json is None else uuid.uuid4(),
        context_json=context_json,
        tasks=tasks,
        at=when,
    )
    return entry, [t.id for t in tasks]


def completed(
    created: j.ExecutionCreated, index: int, output: str | None, when: datetime
) -> j.TaskCompleted:
    task = created.tasks[index]
    return j.TaskCompleted(
        task_execution_id=task.id,
        execution_id=created.execution_id,
        task_name=task.task_name,
        context_id=None if output is None else uuid.uuid4(),
        context_json=output,
        at=when,
    )


async def test_a_fresh_store_holds_nothing(store: Store) -> None:
    assert await store.list_executions() == []
    assert await store.load_unfinished() == []
    assert await store.get_execution(uuid.uuid4()) is None


async def test_execution_created_writes_the_rows_of_schema_section_5(
    backend: Backend,
) -> None:
    created, (extract, transform) = new_execution("extract", "transform")
    await backend.store.apply([created])

    execution = await backend.row("pipeline_executions", created.execution_id)
    assert execution["status"] == "Pending"
    assert execution["pipeline_name"] == "fx_chain3"
    assert execution["pipeline_version"] == "cloaca-fp-1"
    assert backend.uuid(execution["context_id"]) == created.context_id
    for column in ("started_at", "created_at", "updated_at"):
        assert backend.time(execution[column]) == T0
    for column in ("completed_at", "error_details", "paused_at", "pause_reason"):
        assert execution[column] is None
    assert execution["recovery_attempts"] == 0

    context = await backend.row("contexts", created.context_id or uuid.uuid4())
    assert context["value"] == INPUT
    assert backend.time(context["created_at"]) == T0

    tasks = await backend.rows(
        "task_executions", pipeline_execution_id=created.execution_id
    )
    assert {backend.uuid(t["id"]) for t in tasks} == {extract, transform}
    for task in tasks:
        assert task["status"] == "NotStarted"
        assert (task["attempt"], task["max_attempts"]) == (1, 3)
        assert task["trigger_rules"] == '{"type":"Always"}'
        assert task["task_configuration"] == "{}"
        assert backend.time(task["created_at"]) == T0
        assert backend.time(task["updated_at"]) == T0
        for column in ("started_at", "completed_at", "retry_at", "last_error"):
            assert task[column] is None
        assert task["recovery_attempts"] == 0


async def test_an_empty_input_context_is_never_stored(backend: Backend) -> None:
    created, _ = new_execution("only", context_json=None)
    await backend.store.apply([created])
    execution = await backend.row("pipeline_executions", created.execution_id)
    assert execution["context_id"] is None
    assert await backend.count("contexts") == 0
    row = await backend.store.get_execution(created.execution_id)
    assert row is not None
    assert row.context_json is None


async def test_the_life_of_one_execution_round_trips(backend: Backend) -> None:
    store = backend.store
    created, (extract, load) = new_execution("extract", "load")
    await store.apply(
        [
            created,
            j.TaskReady(task_execution_id=extract, at=at(0.1)),
            j.ExecutionRunning(execution_id=created.execution_id, at=at(0.2)),
            j.TaskStarted(task_execution_id=extract, attempt=1, at=at(0.2)),
        ]
    )
    (unfinished,) = await store.load_unfinished()
    assert unfinished.id == created.execution_id
    assert unfinished.status == "Running"
    assert [t.status for t in unfinished.tasks] == ["Running", "NotStarted"]

    extract_done = completed(created, 0, '{"extracted":[1,2,3]}', at(0.3))
    await store.apply([extract_done, j.TaskReady(task_execution_id=load, at=at(0.3))])
    await store.apply([j.TaskStarted(task_execution_id=load, attempt=1, at=at(0.4))])
    load_done = completed(created, 1, '{"loaded":60}', at(0.5))
    finished = j.ExecutionFinished(
        execution_id=created.execution_id,
        status="Completed",
        context_id=load_done.context_id,
        error=None,
        at=at(0.6),
    )
    await store.apply([load_done, finished])

    assert await store.load_unfinished() == []
    row = await store.get_execution(created.execution_id)
    assert row is not None
    assert (row.status, row.pipeline_name, row.pipeline_version) == (
        "Completed",
        "fx_chain3",
        "cloaca-fp-1",
    )
    assert row.context_json == '{"loaded":60}'
    assert (row.started_at, row.created_at) == (T0, T0)
    assert (row.completed_at, row.updated_at) == (at(0.6), at(0.6))
    assert row.error_details is None
    by_name = {t.task_name.rsplit("::", 1)[1]: t for t in row.tasks}
    assert by_name["extract"].status == "Completed"
    assert by_name["extract"].output_context_json == '{"extracted":[1,2,3]}'
    assert by_name["extract"].started_at == at(0.2)
    assert by_name["extract"].completed_at == at(0.3)
    assert by_name["load"].output_context_json == '{"loaded":60}'
    assert by_name["load"].execution_id == created.execution_id

    metadata = await backend.rows(
        "task_execution_metadata", pipeline_execution_id=created.execution_id
    )
    assert len(metadata) == 2
    for meta in metadata:
        assert backend.time(meta["created_at"]) == backend.time(meta["updated_at"])
    load_meta = next(
        m for m in metadata if backend.uuid(m["task_execution_id"]) == load
    )
    assert backend.uuid(load_meta["context_id"]) == load_done.context_id
    assert load_meta["task_name"] == "public::embedded::fx_chain3::load"
    # The input context row stays, orphaned once context_id moved (SCHEMA.md 10.8).
    assert await backend.count("contexts") == 3


async def test_tasks_come_in_created_at_then_task_name_order(store: Store) -> None:
    created, _ = new_execution("zeta", "alpha", "mid")
    await store.apply([created])
    row = await store.get_execution(created.execution_id)
    assert row is not None
    assert [t.task_name.rsplit("::", 1)[1] for t in row.tasks] == [
        "alpha",
        "mid",
        "zeta",
    ]


async def test_entries_on_one_task_take_effect_in_batch_order(backend: Backend) -> None:
    created, (flaky,) = new_execution("flaky", workflow="fx_retry")
    other, (other_task,) = new_execution("tick", workflow="fx_cron_target")
    done = completed(created, 0, '{"flaky_attempts":2}', at(0.5))
    await backend.store.apply(
        [
            created,
            j.TaskReady(task_execution_id=flaky, at=at(0.1)),
            other,
            j.TaskStarted(task_execution_id=flaky, attempt=1, at=at(0.2)),
            j.TaskReady(task_execution_id=other_task, at=at(0.2)),
            j.TaskRetryScheduled(
                task_execution_id=flaky,
                attempt=2,
                retry_at=at(0.4),
                error="ConnectionError: fixture transient failure 1",
                at=at(0.3),
            ),
            j.TaskStarted(task_execution_id=flaky, attempt=2, at=at(0.4)),
            done,
        ]
    )
    row = await backend.row("task_executions", flaky)
    assert row["status"] == "Completed"
    assert row["attempt"] == 2
    assert backend.time(row["started_at"]) == at(0.4)
    assert backend.time(row["completed_at"]) == at(0.5)
    assert backend.time(row["retry_at"]) == at(0.4)
    assert row["last_error"] == "ConnectionError: fixture transient failure 1"
    assert (await backend.row("task_executions", other_task))["status"] == "Ready"


async def test_a_retry_then_a_final_failure(backend: Backend) -> None:
    store = backend.store
    created, (explode,) = new_execution(
        "explode", workflow="fx_failing", max_attempts=2
    )
    message = "RuntimeError: fixture failure: explode always raises"
    await store.apply(
        [
            created,
            j.TaskReady(task_execution_id=explode, at=at(0.1)),
            j.TaskStarted(task_execution_id=explode, attempt=1, at=at(0.1)),
        ]
    )
    await store.apply(
        [
            j.TaskRetryScheduled(
                task_execution_id=explode,
                attempt=2,
                retry_at=at(0.3),
                error=message,
                at=at(0.2),
            )
        ]
    )
    row = await backend.row("task_executions", explode)
    assert (row["status"], row["attempt"]) == ("Ready", 2)
    assert row["started_at"] is None
    assert row["completed_at"] is None
    assert backend.time(row["retry_at"]) == at(0.3)
    assert row["last_error"] == message

    await store.apply(
        [
            j.TaskStarted(task_execution_id=explode, attempt=2, at=at(0.3)),
            j.TaskFailed(task_execution_id=explode, error=message, at=at(0.4)),
            j.ExecutionFinished(
                execution_id=created.execution_id,
                status="Failed",
                context_id=None,
                error=f"Task 'explode' failed: {message}",
                at=at(0.5),
            ),
        ]
    )
    row = await backend.row("task_executions", explode)
    assert row["status"] == "Failed"
    assert backend.time(row["completed_at"]) == at(0.4)
    assert row["last_error"] == row["error_details"] == message
    assert await backend.count("task_execution_metadata") == 0
    execution = await store.get_execution(created.execution_id)
    assert execution is not None
    assert execution.status == "Failed"
    assert execution.error_details == f"Task 'explode' failed: {message}"
    # context_id None leaves the input in place.
    assert execution.context_json == INPUT


async def test_a_skipped_task_keeps_its_reason(backend: Backend) -> None:
    created, (cleanup,) = new_execution("cleanup")
    await backend.store.apply(
        [
            created,
            j.TaskSkipped(
                task_execution_id=cleanup,
                reason="Trigger rules not satisfied",
                at=at(1),
            ),
        ]
    )
    row = await backend.row("task_executions", cleanup)
    assert row["status"] == "Skipped"
    assert row["error_details"] == "Trigger rules not satisfied"
    assert backend.time(row["updated_at"]) == at(1)


async def test_recovery_resets_and_abandons_with_events(backend: Backend) -> None:
    store = backend.store
    created, (first, second) = new_execution("first", "second")
    name = created.tasks[0].task_name
    await store.apply(
        [
            created,
            j.TaskReady(task_execution_id=first, at=at(0.1)),
            j.TaskStarted(task_execution_id=first, attempt=1, at=at(0.1)),
            j.TaskReady(task_execution_id=second, at=at(0.1)),
            j.TaskStarted(task_execution_id=second, attempt=1, at=at(0.1)),
        ]
    )
    await store.apply(
        [
            j.TaskReset(
                task_execution_id=first,
                execution_id=created.execution_id,
                task_name=name,
                recovery_attempt=1,
                at=at(5),
            ),
            j.TaskAbandoned(
                task_execution_id=second,
                execution_id=created.execution_id,
                task_name=created.tasks[1].task_name,
                error="ABANDONED: Exceeded recovery attempts",
                at=at(5),
            ),
        ]
    )
    reset = await backend.row("task_executions", first)
    assert reset["status"] == "Ready"
    assert reset["started_at"] is None
    assert reset["recovery_attempts"] == 1
    assert backend.time(reset["last_recovery_at"]) == at(5)
    abandoned = await backend.row("task_executions", second)
    assert abandoned["status"] == "Failed"
    assert abandoned["error_details"] == "ABANDONED: Exceeded recovery attempts"
    assert abandoned["last_error"] == "ABANDONED: Exceeded recovery attempts"
    assert backend.time(abandoned["completed_at"]) == at(5)

    events = await backend.rows(
        "recovery_events", pipeline_execution_id=created.execution_id
    )
    by_type = {e["recovery_type"]: e for e in events}
    assert set(by_type) == {"task_reset", "task_abandoned"}
    assert backend.uuid(by_type["task_reset"]["task_execution_id"]) == first
    assert json.loads(by_type["task_reset"]["details"]) == {
        "task_name": name,
        "previous_status": "Running",
        "new_status": "Ready",
        "recovery_attempt": 1,
    }
    assert backend.time(by_type["task_abandoned"]["recovered_at"]) == at(5)


async def test_an_update_changes_only_its_own_columns(backend: Backend) -> None:
    created, (task,) = new_execution("only")
    await backend.store.apply([created])
    before = await backend.row("task_executions", task)
    execution_before = await backend.row("pipeline_executions", created.execution_id)
    await backend.store.apply([j.TaskReady(task_execution_id=task, at=at(2))])
    after = await backend.row("task_executions", task)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"status", "updated_at"}
    assert await backend.row("pipeline_executions", created.execution_id) == (
        execution_before
    )


async def test_a_batch_naming_an_unknown_task_stores_nothing(
    backend: Backend,
) -> None:
    created, _ = new_execution("a")
    unknown = uuid.uuid4()
    with pytest.raises(StorageError) as info:
        await backend.store.apply(
            [created, j.TaskReady(task_execution_id=unknown, at=at(1))]
        )
    assert str(unknown) in str(info.value)
    for table in ("contexts", "pipeline_executions", "task_executions"):
        assert await backend.count(table) == 0


async def test_a_duplicate_id_is_a_conflict_and_rolls_the_batch_back(
    backend: Backend,
) -> None:
    store = backend.store
    created, _ = new_execution("a")
    await store.apply([created])
    second, _ = new_execution("b")
    duplicate = j.ExecutionCreated(
        execution_id=created.execution_id,
        pipeline_name="fx_chain3",
        pipeline_version="cloaca-fp-1",
        context_id=None,
        context_json=None,
        tasks=(),
        at=at(1),
    )
    with pytest.raises(Conflict) as info:
        await store.apply([second, duplicate])
    assert store.display_url in str(info.value)
    assert info.value.__cause__ is not None
    assert await store.get_execution(second.execution_id) is None
    assert await backend.count("pipeline_executions") == 1
    assert await backend.count("contexts") == 1


async def test_starting_a_task_that_is_not_ready_is_a_conflict(
    backend: Backend,
) -> None:
    store = backend.store
    created, (task,) = new_execution("only")
    await store.apply(
        [
            created,
            j.TaskReady(task_execution_id=task, at=at(0.1)),
            j.TaskStarted(task_execution_id=task, attempt=1, at=at(0.2)),
        ]
    )
    before = await backend.row("task_executions", task)
    other, _ = new_execution("x")
    with pytest.raises(Conflict) as info:
        await store.apply(
            [other, j.TaskStarted(task_execution_id=task, attempt=1, at=at(0.3))]
        )
    assert str(task) in str(info.value)
    assert "Running" in str(info.value)
    assert await backend.row("task_executions", task) == before
    assert await store.get_execution(other.execution_id) is None


async def test_a_value_the_layout_rejects_is_a_storage_error(store: Store) -> None:
    created, _ = new_execution("a")
    await store.apply([created])
    bogus = j.ExecutionFinished(
        execution_id=created.execution_id,
        status="Exploded",
        context_id=None,
        error=None,
        at=at(1),
    )
    with pytest.raises(StorageError) as info:
        await store.apply([bogus])
    assert not isinstance(info.value, Conflict)
    assert store.display_url in str(info.value)
    assert info.value.__cause__ is not None
    row = await store.get_execution(created.execution_id)
    assert row is not None
    assert row.status == "Pending"


async def test_naive_datetimes_are_refused_before_writing(
    backend: Backend,
) -> None:
    created, _ = new_execution("a", when=datetime(2026, 12, 3, 20, 0, 0))
    with pytest.raises(StorageError):
        await backend.store.apply([created])
    assert await backend.count("pipeline_executions") == 0


async def test_timestamps_round_trip_to_the_microsecond(store: Store) -> None:
    whole = datetime(2026, 12, 4, 14, 0, 0, tzinfo=UTC)
    fine = datetime(2026, 12, 4, 14, 0, 0, 1, tzinfo=UTC)
    first, _ = new_execution("a", when=whole)
    second, _ = new_execution("b", when=fine)
    await store.apply([first, second])
    got = {row.id: row.started_at for row in await store.list_executions()}
    assert got == {first.execution_id: whole, second.execution_id: fine}
    for value in got.values():
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)


async def test_list_executions_filters_orders_and_pages(store: Store) -> None:
    made = []
    for index, (workflow, status) in enumerate(
        [
            ("wf_a", "Completed"),
            ("wf_b", "Completed"),
            ("wf_a", "Failed"),
            ("wf_a", None),
        ]
    ):
        created, _ = new_execution("t", workflow=workflow, when=at(index))
        entries: list[j.JournalEvent] = [created]
        if status is not None:
            entries.append(
                j.ExecutionFinished(
                    execution_id=created.execution_id,
                    status=status,
                    context_id=None,
                    error=None,
                    at=at(index + 0.5),
                )
            )
        await store.apply(entries)
        made.append(created.execution_id)

    newest_first = [row.id for row in await store.list_executions()]
    assert newest_first == made[::-1]
    assert all(row.tasks == () for row in await store.list_executions())
    assert [r.id for r in await store.list_executions(pipeline_name="wf_a")] == [
        made[3],
        made[2],
        made[0],
    ]
    assert [r.id for r in await store.list_executions(status="Completed")] == [
        made[1],
        made[0],
    ]
    assert [
        r.id for r in await store.list_executions(pipeline_name="wf_a", status="Failed")
    ] == [made[2]]
    assert [r.id for r in await store.list_executions(limit=2, offset=1)] == [
        made[2],
        made[1],
    ]
    assert await store.list_executions(pipeline_name="nope") == []


async def test_load_unfinished_returns_pending_and_running_with_tasks(
    store: Store,
) -> None:
    pending, _ = new_execution("a", "b", when=at(0))
    running, (task,) = new_execution("c", when=at(1))
    done, _ = new_execution("d", when=at(2))
    await store.apply(
        [
            pending,
            running,
            j.ExecutionRunning(execution_id=running.execution_id, at=at(1.5)),
            done,
            j.ExecutionFinished(
                execution_id=done.execution_id,
                status="Completed",
                context_id=None,
                error=None,
                at=at(3),
            ),
        ]
    )
    rows = await store.load_unfinished()
    assert [(r.id, r.status) for r in rows] == [
        (pending.execution_id, "Pending"),
        (running.execution_id, "Running"),
    ]
    assert [len(r.tasks) for r in rows] == [2, 1]
    assert rows[1].tasks[0].id == task
    assert rows[0].context_json == INPUT


async def test_many_workflows_in_two_group_commits(store: Store) -> None:
    executions = [new_execution("only", context_json=None) for _ in range(32)]
    first: list[j.JournalEvent] = []
    second: list[j.JournalEvent] = []
    for created, (task,) in executions:
        first += [
            created,
            j.ExecutionRunning(execution_id=created.execution_id, at=at(0.1)),
            j.TaskReady(task_execution_id=task, at=at(0.1)),
            j.TaskStarted(task_execution_id=task, attempt=1, at=at(0.1)),
        ]
        done = completed(created, 0, '{"n":1}', at(0.2))
        second += [
            done,
            j.ExecutionFinished(
                execution_id=created.execution_id,
                status="Completed",
                context_id=done.context_id,
                error=None,
                at=at(0.3),
            ),
        ]
    await store.apply(first)
    assert len(await store.load_unfinished()) == 32
    await store.apply(second)
    assert await store.load_unfinished() == []
    rows = await store.list_executions(limit=100)
    assert len(rows) == 32
    assert {r.status for r in rows} == {"Completed"}
    assert {r.context_json for r in rows} == {'{"n":1}'}


async def test_an_empty_batch_writes_nothing(backend: Backend) -> None:
    await backend.store.apply([])
    assert await backend.count("pipeline_executions") == 0


async def test_a_closed_store_raises_storage_error(store: Store) -> None:
    await store.close()
    await store.close()
    created, _ = new_execution("a")
    with pytest.raises(StorageError):
        await store.apply([created])
    with pytest.raises(StorageError):
        await store.get_execution(created.execution_id)
