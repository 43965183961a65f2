"""The schedule tables of both stores (SCHEMA.md 6-7): rows, claims, dedupe."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloaca.storage.protocol import ScheduleStore, parse_stamp
from tests.storage.conftest import Backend

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 3, 20, 26, 36, 312607, tzinfo=UTC)
TICK = datetime(2026, 12, 3, 20, 27, tzinfo=UTC)


def sched(backend: Backend) -> ScheduleStore:
    store: Any = backend.store
    return store  # type: ignore[no-any-return]


async def register(
    backend: Backend, workflow: str = "wf", next_run_at: datetime = TICK
) -> uuid.UUID:
    schedule_id = uuid.uuid4()
    await sched(backend).insert_cron_schedule(
        schedule_id=schedule_id,
        workflow_name=workflow,
        cron_expression="* * * * *",
        timezone="UTC",
        next_run_at=next_run_at,
        now=T0,
    )
    return schedule_id


async def insert_execution(backend: Backend) -> uuid.UUID:
    """A bare pipeline_executions row, so links satisfy PostgreSQL's foreign key."""
    from cloaca.storage import journal as j

    execution_id = uuid.uuid4()
    await backend.store.apply(
        [
            j.ExecutionCreated(
                execution_id=execution_id,
                pipeline_name="wf",
                pipeline_version="v",
                context_id=None,
                context_json=None,
                tasks=(),
                at=T0,
            )
        ]
    )
    return execution_id


async def test_registration_writes_the_0_3_1_row(backend: Backend) -> None:
    schedule_id = await register(backend)
    raw = await backend.row("cron_schedules", schedule_id)
    assert bool(raw["enabled"]) is True
    assert raw["catchup_policy"] == "skip"
    assert raw["start_date"] is None
    assert raw["last_run_at"] is None
    assert backend.time(raw["next_run_at"]) == TICK
    if backend.name == "sqlite":
        assert raw["next_run_at"] == "2026-12-03T20:27:00+00:00"
        assert raw["created_at"] == "2026-12-03T20:26:36.312607+00:00"
    row = await sched(backend).get_cron_schedule(schedule_id)
    assert row is not None
    assert row.next_run_at == "2026-12-03T20:27:00+00:00"
    assert row.created_at == "2026-12-03T20:26:36.312607+00:00"
    assert row.updated_at == row.created_at
    assert await sched(backend).get_cron_schedule(uuid.uuid4()) is None


async def test_list_orders_by_workflow_and_pages(backend: Backend) -> None:
    for name in ("b", "c", "a"):
        await register(backend, name)
    store = sched(backend)
    rows = await store.list_cron_schedules(enabled_only=False, limit=100, offset=0)
    assert [r.workflow_name for r in rows] == ["a", "b", "c"]
    page = await store.list_cron_schedules(enabled_only=False, limit=1, offset=1)
    assert [r.workflow_name for r in page] == ["b"]
    assert await store.set_cron_schedule_enabled(rows[0].id, False, T0)
    enabled = await store.list_cron_schedules(enabled_only=True, limit=100, offset=0)
    assert [r.workflow_name for r in enabled] == ["b", "c"]


async def test_update_enable_and_delete(backend: Backend) -> None:
    store = sched(backend)
    schedule_id = await register(backend)
    later = T0 + timedelta(seconds=5)
    new_tick = datetime(2026, 12, 4, 9, tzinfo=UTC)
    assert await store.update_cron_schedule(
        schedule_id,
        cron_expression="0 9 * * *",
        timezone="Europe/Berlin",
        next_run_at=new_tick,
        now=later,
    )
    row = await store.get_cron_schedule(schedule_id)
    assert row is not None
    assert (row.cron_expression, row.timezone) == ("0 9 * * *", "Europe/Berlin")
    assert parse_stamp(row.next_run_at) == new_tick
    assert parse_stamp(row.updated_at) == later
    assert not await store.update_cron_schedule(
        uuid.uuid4(), cron_expression="x", timezone="UTC", next_run_at=T0, now=T0
    )
    assert not await store.set_cron_schedule_enabled(uuid.uuid4(), True, T0)
    records = await store.claim_cron_ticks(
        schedule_id,
        seen_next_run_at=row.next_run_at,
        next_run_at=new_tick + timedelta(days=1),
        ticks=[new_tick],
        now=new_tick,
    )
    assert records is not None
    assert len(records) == 1
    assert await store.delete_cron_schedule(schedule_id)
    assert await backend.count("cron_executions") == 0
    assert not await store.delete_cron_schedule(schedule_id)


async def test_claim_is_a_compare_and_set_and_ticks_are_unique(
    backend: Backend,
) -> None:
    store = sched(backend)
    schedule_id = await register(backend)
    due, earliest = await store.due_cron_schedules(TICK)
    assert [r.id for r in due] == [schedule_id]
    assert earliest == "2026-12-03T20:27:00+00:00"
    assert (await store.due_cron_schedules(TICK - timedelta(seconds=1)))[0] == []
    seen = due[0].next_run_at
    now = TICK + timedelta(seconds=2)
    nxt = TICK + timedelta(minutes=1)
    first = await store.claim_cron_ticks(
        schedule_id, seen_next_run_at=seen, next_run_at=nxt, ticks=[TICK], now=now
    )
    assert first is not None
    assert [r.scheduled_time for r in first] == ["2026-12-03T20:27:00+00:00"]
    assert first[0].pipeline_execution_id is None
    assert parse_stamp(first[0].claimed_at) == now
    # A second claimer that read the same row loses the claim and writes nothing.
    again = await store.claim_cron_ticks(
        schedule_id, seen_next_run_at=seen, next_run_at=nxt, ticks=[TICK], now=now
    )
    assert again is None
    row = await store.get_cron_schedule(schedule_id)
    assert row is not None
    assert parse_stamp(row.next_run_at) == nxt
    assert row.last_run_at is not None
    assert parse_stamp(row.last_run_at) == now
    # A claimer that won the schedule but finds the tick recorded writes no row.
    dup = await store.claim_cron_ticks(
        schedule_id,
        seen_next_run_at=row.next_run_at,
        next_run_at=nxt + timedelta(minutes=1),
        ticks=[TICK, nxt],
        now=nxt,
    )
    assert dup is not None
    assert [parse_stamp(r.scheduled_time) for r in dup] == [nxt]
    assert await backend.count("cron_executions") == 2


async def test_disabled_schedules_cannot_be_claimed(backend: Backend) -> None:
    store = sched(backend)
    schedule_id = await register(backend)
    await store.set_cron_schedule_enabled(schedule_id, False, T0)
    assert (await store.due_cron_schedules(TICK)) == ([], None)
    claimed = await store.claim_cron_ticks(
        schedule_id,
        seen_next_run_at="2026-12-03T20:27:00+00:00",
        next_run_at=TICK + timedelta(minutes=1),
        ticks=[TICK],
        now=TICK,
    )
    assert claimed is None


async def test_link_lost_reclaim_and_stats(backend: Backend) -> None:
    store = sched(backend)
    schedule_id = await register(backend)
    records = await store.claim_cron_ticks(
        schedule_id,
        seen_next_run_at="2026-12-03T20:27:00+00:00",
        next_run_at=TICK + timedelta(minutes=2),
        ticks=[TICK, TICK + timedelta(minutes=1)],
        now=TICK,
    )
    assert records is not None
    linked, lost = records
    execution_id = await insert_execution(backend)
    assert await store.link_cron_execution(linked.id, execution_id, TICK)
    assert not await store.link_cron_execution(linked.id, execution_id, TICK)
    history = await store.list_cron_executions(schedule_id, limit=100, offset=0)
    assert [r.id for r in history] == [lost.id, linked.id]
    assert history[1].pipeline_execution_id == execution_id
    assert await store.list_cron_executions(schedule_id, limit=1, offset=1) == [
        history[1]
    ]
    # Not lost before the threshold, lost after it.
    assert await store.lost_cron_executions(TICK, 10) == []
    later = TICK + timedelta(minutes=11)
    (found,) = await store.lost_cron_executions(later, 10)
    assert found.execution.id == lost.id
    assert (found.workflow_name, found.cron_expression) == ("wf", "* * * * *")
    seen = found.execution.updated_at
    assert await store.reclaim_cron_execution(lost.id, seen, later)
    assert not await store.reclaim_cron_execution(lost.id, seen, later)
    # Reclaimed: not lost again until another threshold has passed.
    assert await store.lost_cron_executions(later, 10) == []
    assert await store.existing_executions([execution_id, uuid.uuid4()]) == {
        execution_id
    }
    stats = await store.cron_execution_stats(T0, later)
    assert (stats.total, stats.linked, stats.lost) == (2, 1, 1)
    assert (await store.cron_execution_stats(later, later)).total == 0
    await store.set_cron_schedule_enabled(schedule_id, False, later)
    assert await store.lost_cron_executions(later + timedelta(hours=1), 10) == []


async def test_trigger_schedules_upsert_keeps_enabled(backend: Backend) -> None:
    store = sched(backend)
    await store.upsert_trigger_schedule(
        schedule_id=uuid.uuid4(),
        trigger_name="t1",
        workflow_name="wf",
        poll_interval_ms=1000,
        allow_concurrent=False,
        now=T0,
    )
    first = await store.get_trigger_schedule("t1")
    assert first is not None
    assert (first.poll_interval_ms, first.enabled, first.last_poll_at) == (
        1000,
        True,
        None,
    )
    assert await store.set_trigger_enabled("t1", False, T0)
    later = T0 + timedelta(seconds=1)
    await store.upsert_trigger_schedule(
        schedule_id=uuid.uuid4(),
        trigger_name="t1",
        workflow_name="wf2",
        poll_interval_ms=500,
        allow_concurrent=True,
        now=later,
    )
    row = await store.get_trigger_schedule("t1")
    assert row is not None
    assert row.id == first.id
    assert (row.workflow_name, row.poll_interval_ms, row.allow_concurrent) == (
        "wf2",
        500,
        True,
    )
    assert row.enabled is False
    await store.record_trigger_poll("t1", later)
    polled = await store.get_trigger_schedule("t1")
    assert polled is not None
    assert polled.last_poll_at is not None
    assert parse_stamp(polled.last_poll_at) == later
    assert not await store.set_trigger_enabled("nope", True, T0)
    assert await store.get_trigger_schedule("nope") is None
    await store.upsert_trigger_schedule(
        schedule_id=uuid.uuid4(),
        trigger_name="t2",
        workflow_name="wf",
        poll_interval_ms=1,
        allow_concurrent=False,
        now=later,
    )
    rows = await store.list_trigger_schedules(enabled_only=False, limit=10, offset=0)
    assert [r.trigger_name for r in rows] == ["t2", "t1"]
    enabled = await store.list_trigger_schedules(enabled_only=True, limit=10, offset=0)
    assert [r.trigger_name for r in enabled] == ["t2"]


async def test_trigger_fires_dedupe_until_completed(backend: Backend) -> None:
    store = sched(backend)
    first = uuid.uuid4()
    assert await store.insert_trigger_execution(
        record_id=first, trigger_name="t", context_hash="fire_no_context", now=T0
    )
    assert not await store.insert_trigger_execution(
        record_id=uuid.uuid4(),
        trigger_name="t",
        context_hash="fire_no_context",
        now=T0,
    )
    execution_id = await insert_execution(backend)
    await store.link_trigger_execution(first, execution_id, T0, completed=False)
    done = T0 + timedelta(seconds=3)
    assert await store.complete_trigger_executions(execution_id, done) == 1
    assert await store.complete_trigger_executions(execution_id, done) == 0
    second = uuid.uuid4()
    assert await store.insert_trigger_execution(
        record_id=second, trigger_name="t", context_hash="fire_no_context", now=done
    )
    # A lost hand-off is completed by the sweep once it is old enough.
    assert await store.sweep_trigger_executions(done, done) == 0
    assert await store.sweep_trigger_executions(done + timedelta(seconds=1), done) == 1
    other = await insert_execution(backend)
    await store.insert_completed_trigger_execution(
        record_id=uuid.uuid4(),
        trigger_name="t",
        context_hash="fire_no_context",
        pipeline_execution_id=other,
        started_at=done,
        now=done + timedelta(seconds=9),
    )
    history = await store.list_trigger_executions("t", limit=10, offset=0)
    assert len(history) == 3
    assert history[-1].id == first
    assert history[-1].pipeline_execution_id == execution_id
    assert history[-1].completed_at is not None
    assert parse_stamp(history[-1].completed_at) == done
    assert all(r.completed_at is not None for r in history)
    assert await store.list_trigger_executions("other", limit=10, offset=0) == []
