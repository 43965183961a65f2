"""Taking over a database written by Cloacina 0.3.1 (the SQLite fixture, a copy).

Rows are read as stored, quirks included (SCHEMA.md 10): ``fx_failing`` stays
``Completed`` with ``explode`` ``Failed``; nanosecond timestamps read as
microseconds. New rows go next to them with 0.3.1's encodings, and rows the store
did not change keep every byte.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloaca.storage import journal as j
from cloaca.storage.sqlite import SqliteStore
from tests.storage.conftest import TABLES, sqlite_url

pytestmark = pytest.mark.anyio

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?\+00:00")


def micro(text: str) -> datetime:
    """The manifest's RFC 3339 text truncated to microseconds, as a test oracle."""
    head, _, rest = text.partition(".")
    fraction = rest.split("+")[0] if rest else ""
    base = datetime.strptime(head.removesuffix("+00:00"), "%Y-%m-%dT%H:%M:%S")
    return base.replace(microsecond=int(fraction[:6].ljust(6, "0")), tzinfo=UTC)


def rows_by_id(path: Path) -> dict[str, dict[bytes, tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: {row[0]: row for row in conn.execute(f"SELECT * FROM {table}")}
            for table in TABLES
        }
    finally:
        conn.close()


@pytest.fixture
async def taken_over(
    fixture_copy: Path, anyio_backend: str
) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(sqlite_url(fixture_copy))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_nothing_of_the_fixture_is_unfinished(taken_over: SqliteStore) -> None:
    assert await taken_over.load_unfinished() == []


async def test_executions_list_as_stored_newest_first(
    taken_over: SqliteStore, manifest: dict[str, Any]
) -> None:
    rows = await taken_over.list_executions()
    expected = sorted(
        manifest["pipeline_executions"], key=lambda r: r["started_at"], reverse=True
    )
    assert [str(r.id) for r in rows] == [e["id"] for e in expected]
    for row, stored in zip(rows, expected, strict=True):
        assert row.pipeline_name == stored["pipeline_name"]
        assert row.pipeline_version == stored["pipeline_version"]
        assert row.status == stored["status"] == "Completed"
        assert row.started_at == micro(stored["started_at"])
        assert row.completed_at == micro(stored["completed_at"])
        assert row.error_details is None
    assert [r.pipeline_name for r in await taken_over.list_executions(limit=2)] == [
        "fx_cron_target",
        "fx_cron_target",
    ]


async def test_every_execution_reads_its_final_context_and_tasks(
    taken_over: SqliteStore, manifest: dict[str, Any]
) -> None:
    by_start = {e["started_at"]: e for e in manifest["pipeline_executions"]}
    tasks = manifest["task_executions"]
    for result in manifest["execute_results"]:
        stored = by_start[result["start_time"]]
        row = await taken_over.get_execution(uuid.UUID(stored["id"]))
        assert row is not None
        assert json.loads(row.context_json or "null") == result["final_context"]
        expected = [t for t in tasks if t["pipeline_execution_id"] == stored["id"]]
        assert {str(t.id) for t in row.tasks} == {t["id"] for t in expected}
        names = [t.task_name for t in row.tasks]
        assert names == sorted(names)  # all share created_at: task_name order
        for task in row.tasks:
            want = next(t for t in expected if t["id"] == str(task.id))
            assert (task.status, task.attempt, task.max_attempts) == (
                want["status"],
                want["attempt"],
                want["max_attempts"],
            )
            assert task.error_details == want["error_details"]
            assert task.last_error == want["last_error"]
            assert task.retry_at == (want["retry_at"] and micro(want["retry_at"]))
            assert task.completed_at == micro(want["completed_at"])
            assert task.started_at is None  # SCHEMA.md 10.3
            assert json.loads(task.trigger_rules or "null") == {"type": "Always"}


async def test_fx_failing_stays_completed_with_explode_failed(
    taken_over: SqliteStore, manifest: dict[str, Any]
) -> None:
    (stored,) = [
        e for e in manifest["pipeline_executions"] if e["pipeline_name"] == "fx_failing"
    ]
    row = await taken_over.get_execution(uuid.UUID(stored["id"]))
    assert row is not None
    assert (row.status, row.error_details) == ("Completed", None)
    assert row.started_at == datetime(2026, 12, 3, 20, 26, 33, 795540, tzinfo=UTC)
    by_name = {t.task_name.rsplit("::", 1)[1]: t for t in row.tasks}
    explode = by_name["explode"]
    assert (explode.status, explode.attempt, explode.max_attempts) == ("Failed", 2, 2)
    assert explode.last_error == (
        "Task execution error: Task execution failed: Python task execution failed: "
        "RuntimeError: fixture failure: explode always raises"
    )
    assert explode.error_details is None
    assert explode.output_context_json is None
    assert explode.retry_at == datetime(2026, 12, 3, 20, 26, 34, 87500, tzinfo=UTC)
    assert json.loads(by_name["cleanup"].output_context_json or "") == {"cleaned": True}
    assert json.loads(row.context_json or "") == {"cleaned": True}


async def test_fx_retry_keeps_its_retry_at_after_success(
    taken_over: SqliteStore,
) -> None:
    (row,) = await taken_over.list_executions(pipeline_name="fx_retry")
    full = await taken_over.get_execution(row.id)
    assert full is not None
    flaky = next(t for t in full.tasks if t.task_name.endswith("::flaky"))
    assert (flaky.status, flaky.attempt, flaky.last_error) == ("Completed", 3, None)
    assert flaky.retry_at == datetime(2026, 12, 3, 20, 26, 35, 386541, tzinfo=UTC)
    assert json.loads(flaky.output_context_json or "")["flaky_attempts"] == 3


async def test_a_new_execution_is_stored_with_0_3_1_encodings_next_to_the_fixture(
    taken_over: SqliteStore, fixture_copy: Path
) -> None:
    before = rows_by_id(fixture_copy)
    when = datetime(2026, 12, 5, 9, 0, 0, 250000, tzinfo=UTC)
    input_id = uuid.uuid4()
    task = j.NewTask(
        id=uuid.uuid4(),
        task_name="public::embedded::fx_chain3::extract",
        max_attempts=3,
    )
    created = j.ExecutionCreated(
        execution_id=uuid.uuid4(),
        pipeline_name="fx_chain3",
        pipeline_version="cloaca-fingerprint",
        context_id=input_id,
        context_json='{"fixture":"chain3","text":"héllo ✓"}',
        tasks=(task,),
        at=when,
    )
    output = uuid.uuid4()
    await taken_over.apply(
        [
            created,
            j.TaskReady(task_execution_id=task.id, at=when),
            j.TaskStarted(task_execution_id=task.id, attempt=1, at=when),
        ]
    )
    await taken_over.apply(
        [
            j.TaskCompleted(
                task_execution_id=task.id,
                execution_id=created.execution_id,
                task_name=task.task_name,
                context_id=output,
                context_json='{"extracted":[1,2,3]}',
                at=datetime(2026, 12, 5, 9, 0, 1, tzinfo=UTC),
            ),
            j.ExecutionFinished(
                execution_id=created.execution_id,
                status="Completed",
                context_id=output,
                error=None,
                at=datetime(2026, 12, 5, 9, 0, 1, tzinfo=UTC),
            ),
        ]
    )
    after = rows_by_id(fixture_copy)
    for table in TABLES:
        # Every fixture row keeps every byte; new rows only add.
        assert {k: after[table][k] for k in before[table]} == before[table]

    conn = sqlite3.connect(fixture_copy)
    try:
        execution = conn.execute(
            "SELECT typeof(id), length(id), typeof(context_id), started_at, "
            "completed_at, typeof(recovery_attempts) FROM pipeline_executions "
            "WHERE id = ?",
            (created.execution_id.bytes,),
        ).fetchone()
        assert execution == (
            "blob",
            16,
            "blob",
            "2026-12-05T09:00:00.250000+00:00",
            "2026-12-05T09:00:01+00:00",
            "integer",
        )
        stored_task = conn.execute(
            "SELECT typeof(pipeline_execution_id), status, attempt, max_attempts, "
            "trigger_rules, task_configuration, created_at, started_at "
            "FROM task_executions WHERE id = ?",
            (task.id.bytes,),
        ).fetchone()
        assert stored_task == (
            "blob",
            "Completed",
            1,
            3,
            '{"type":"Always"}',
            "{}",
            "2026-12-05T09:00:00.250000+00:00",
            "2026-12-05T09:00:00.250000+00:00",
        )
        (value,) = conn.execute(
            "SELECT value FROM contexts WHERE id = ?", (input_id.bytes,)
        ).fetchone()
        assert value == '{"fixture":"chain3","text":"héllo ✓"}'
        (meta,) = conn.execute(
            "SELECT context_id FROM task_execution_metadata "
            "WHERE task_execution_id = ?",
            (task.id.bytes,),
        ).fetchone()
        assert meta == output.bytes
        for column in ("created_at", "updated_at", "started_at"):
            texts = [
                r[0] for r in conn.execute(f"SELECT {column} FROM task_executions")
            ]
            assert all(RFC3339.fullmatch(t) for t in texts if t is not None), column
    finally:
        conn.close()
    rows = await taken_over.list_executions()
    assert len(rows) == 8
    assert rows[0].id == created.execution_id


async def test_a_0_3_1_pending_execution_resumes_without_losing_nanoseconds(
    taken_over: SqliteStore, fixture_copy: Path
) -> None:
    # What 0.3.1 leaves behind when it dies mid-run (SCHEMA.md 10.2, 10.3): a
    # Pending execution whose task sits in Ready, every time with 9 digits.
    execution_id, task_id = uuid.uuid4(), uuid.uuid4()
    created = "2026-12-03T20:30:00.123456789+00:00"
    conn = sqlite3.connect(fixture_copy, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO pipeline_executions (id, pipeline_name, pipeline_version, "
            "status, started_at, created_at, updated_at) "
            "VALUES (?, 'fx_cron_target', '0a1b2c3d4e5f6071', 'Pending', ?, ?, ?)",
            (execution_id.bytes, created, created, created),
        )
        conn.execute(
            "INSERT INTO task_executions (id, pipeline_execution_id, task_name, "
            "status, attempt, max_attempts, trigger_rules, task_configuration, "
            "created_at, updated_at) VALUES (?, ?, "
            "'public::embedded::fx_cron_target::tick', 'Ready', 1, 3, "
            "'{\"type\":\"Always\"}', '{}', ?, ?)",
            (task_id.bytes, execution_id.bytes, created, created),
        )
    finally:
        conn.close()

    (unfinished,) = await taken_over.load_unfinished()
    assert (unfinished.id, unfinished.status) == (execution_id, "Pending")
    assert unfinished.created_at == datetime(2026, 12, 3, 20, 30, 0, 123456, tzinfo=UTC)
    assert [(t.id, t.status) for t in unfinished.tasks] == [(task_id, "Ready")]

    now = datetime(2026, 12, 4, 8, 0, 0, tzinfo=UTC)
    await taken_over.apply(
        [
            j.ExecutionRunning(execution_id=execution_id, at=now),
            j.TaskStarted(task_execution_id=task_id, attempt=1, at=now),
            j.TaskCompleted(
                task_execution_id=task_id,
                execution_id=execution_id,
                task_name="public::embedded::fx_cron_target::tick",
                context_id=None,
                context_json=None,
                at=now,
            ),
            j.ExecutionFinished(
                execution_id=execution_id,
                status="Completed",
                context_id=None,
                error=None,
                at=now,
            ),
        ]
    )
    conn = sqlite3.connect(fixture_copy)
    try:
        assert conn.execute(
            "SELECT status, started_at, created_at, completed_at, updated_at "
            "FROM pipeline_executions WHERE id = ?",
            (execution_id.bytes,),
        ).fetchone() == (
            "Completed",
            created,
            created,
            now.isoformat(),
            now.isoformat(),
        )
        assert conn.execute(
            "SELECT status, created_at, started_at FROM task_executions WHERE id = ?",
            (task_id.bytes,),
        ).fetchone() == ("Completed", created, now.isoformat())
    finally:
        conn.close()
    assert await taken_over.load_unfinished() == []
