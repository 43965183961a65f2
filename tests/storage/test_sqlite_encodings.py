"""SQLite encodings (SCHEMA.md 2.1) and the shape of a batch (few executemany calls)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cloaca.storage import journal as j
from cloaca.storage.errors import StorageError
from cloaca.storage.sqlite import SqliteStore
from cloaca.storage.sqlite_apply import phase_batch
from cloaca.storage.sqlite_codec import decode_timestamp, encode_timestamp
from tests.storage.conftest import sqlite_url


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 12, 4, 14, 0, 0, tzinfo=UTC), "2026-12-04T14:00:00+00:00"),
        (
            datetime(2026, 12, 3, 20, 26, 32, 785487, tzinfo=UTC),
            "2026-12-03T20:26:32.785487+00:00",
        ),
        (
            datetime(2026, 12, 4, 9, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2026-12-04T14:00:00+00:00",
        ),
    ],
)
def test_timestamps_are_written_as_utc_rfc3339_without_forced_fraction(
    moment: datetime, text: str
) -> None:
    assert encode_timestamp(moment) == text


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(StorageError, match="naive datetime"):
        encode_timestamp(datetime(2026, 12, 4, 14, 0, 0))


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-12-03T20:26:32.785487379+00:00", (2026, 12, 3, 20, 26, 32, 785487)),
        ("2026-12-03T20:26:32.999999999+00:00", (2026, 12, 3, 20, 26, 32, 999999)),
        ("2026-12-04T14:00:00+00:00", (2026, 12, 4, 14, 0, 0, 0)),
        ("2026-12-04T14:00:00.5+00:00", (2026, 12, 4, 14, 0, 0, 500000)),
        ("2026-12-04T14:00:00Z", (2026, 12, 4, 14, 0, 0, 0)),
        ("2026-12-04T15:00:00+01:00", (2026, 12, 4, 14, 0, 0, 0)),
        ("2026-12-03 20:26:32", (2026, 12, 3, 20, 26, 32, 0)),
    ],
)
def test_timestamps_read_with_0_to_9_digits_truncated_to_microseconds(
    text: str, moment: tuple[int, int, int, int, int, int, int]
) -> None:
    year, month, day, hour, minute, second, micro = moment
    expected = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    assert decode_timestamp(text) == expected
    assert decode_timestamp(text).tzinfo is UTC


def test_an_unreadable_timestamp_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="unreadable timestamp"):
        decode_timestamp("yesterday")


def test_text_order_of_written_timestamps_is_time_order() -> None:
    base = datetime(2026, 12, 4, 14, 0, 0, tzinfo=UTC)
    moments = [base + timedelta(microseconds=n) for n in (0, 1, 10, 500000, 999999)]
    moments.append(base + timedelta(seconds=1))
    texts = [encode_timestamp(m) for m in moments]
    assert sorted(texts) == texts


def executions(count: int) -> list[j.JournalEvent]:
    """Both commits of ``count`` one-task workflows, as one list."""
    at = datetime(2026, 12, 4, 14, 0, 0, tzinfo=UTC)
    first: list[j.JournalEvent] = []
    second: list[j.JournalEvent] = []
    for _ in range(count):
        task = j.NewTask(
            id=uuid.uuid4(), task_name="public::embedded::w::t", max_attempts=1
        )
        created = j.ExecutionCreated(
            execution_id=uuid.uuid4(),
            pipeline_name="w",
            pipeline_version="v",
            context_id=uuid.uuid4(),
            context_json='{"n":1}',
            tasks=(task,),
            at=at,
        )
        output = uuid.uuid4()
        first += [
            created,
            j.ExecutionRunning(execution_id=created.execution_id, at=at),
            j.TaskReady(task_execution_id=task.id, at=at),
            j.TaskStarted(task_execution_id=task.id, attempt=1, at=at),
        ]
        second += [
            j.TaskCompleted(
                task_execution_id=task.id,
                execution_id=created.execution_id,
                task_name=task.task_name,
                context_id=output,
                context_json='{"n":2}',
                at=at,
            ),
            j.ExecutionFinished(
                execution_id=created.execution_id,
                status="Completed",
                context_id=output,
                error=None,
                at=at,
            ),
        ]
    return first + second


def test_a_batch_needs_the_same_few_calls_whatever_its_size() -> None:
    _, small = phase_batch(executions(1))
    big_contexts, big = phase_batch(executions(32))
    assert [name for name, _ in big] == [name for name, _ in small]
    assert len(big) <= 8
    assert len(big_contexts) == 64
    assert all(len(rows) == 32 for _, rows in big)


def test_entries_on_one_row_keep_their_order_across_phases() -> None:
    at = datetime(2026, 12, 4, 14, 0, 0, tzinfo=UTC)
    task = uuid.uuid4()
    entries: list[j.JournalEvent] = [
        j.TaskStarted(task_execution_id=task, attempt=1, at=at),
        j.TaskRetryScheduled(
            task_execution_id=task, attempt=2, retry_at=at, error="boom", at=at
        ),
        j.TaskStarted(task_execution_id=task, attempt=2, at=at),
    ]
    _, groups = phase_batch(entries)
    assert [(name, [r["attempt"] for r in rows]) for name, rows in groups] == [
        ("start_task", [1]),
        ("schedule_task_retry", [2]),
        ("start_task", [2]),
    ]


@pytest.mark.anyio
async def test_rows_we_write_use_0_3_1_types(tmp_path: Path) -> None:
    path = tmp_path / "types.db"
    store = SqliteStore(sqlite_url(path))
    await store.open()
    at = datetime(2026, 12, 4, 14, 0, 0, tzinfo=UTC)
    task = j.NewTask(
        id=uuid.uuid4(), task_name="public::embedded::w::t", max_attempts=2
    )
    execution_id = uuid.uuid4()
    try:
        await store.apply(
            [
                j.ExecutionCreated(
                    execution_id=execution_id,
                    pipeline_name="w",
                    pipeline_version="v",
                    context_id=uuid.uuid4(),
                    context_json='{"text":"héllo ✓"}',
                    tasks=(task,),
                    at=at,
                ),
                j.TaskStarted(task_execution_id=task.id, attempt=1, at=at),
                j.TaskRetryScheduled(
                    task_execution_id=task.id,
                    attempt=2,
                    retry_at=at + timedelta(milliseconds=100),
                    error="ConnectionError: ✗",
                    at=at,
                ),
                j.TaskStarted(task_execution_id=task.id, attempt=2, at=at),
                j.TaskReset(
                    task_execution_id=task.id,
                    execution_id=execution_id,
                    task_name="public::embedded::w::t — ü",
                    recovery_attempt=1,
                    at=at,
                ),
            ]
        )
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT typeof(id), typeof(attempt), typeof(retry_at), retry_at, "
            "typeof(recovery_attempts), last_error FROM task_executions"
        ).fetchone()
        assert row == (
            "blob",
            "integer",
            "text",
            "2026-12-04T14:00:00.100000+00:00",
            "integer",
            "ConnectionError: ✗",
        )
        event = conn.execute(
            "SELECT typeof(id), length(id), typeof(task_execution_id), recovery_type, "
            "details, recovered_at FROM recovery_events"
        ).fetchone()
        assert event == (
            "blob",
            16,
            "blob",
            "task_reset",
            '{"task_name":"public::embedded::w::t — ü","previous_status":"Running",'
            '"new_status":"Ready","recovery_attempt":1}',
            "2026-12-04T14:00:00+00:00",
        )
        assert conn.execute("SELECT value FROM contexts").fetchone() == (
            '{"text":"héllo ✓"}',
        )
    finally:
        conn.close()
