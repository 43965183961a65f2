"""``/healthz`` and ``/metrics``: what the journal committed, counted and served."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from cloaca.health import HealthServer, Histogram, MeteredStore, Metrics
from cloaca.storage import journal as j, open_store
from cloaca.storage.errors import StorageError
from cloaca.storage.protocol import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run_of_one_execution(
    workflow: str = "etl", *, fails: bool = False
) -> tuple[list[j.JournalEvent], list[j.JournalEvent]]:
    """Two batches: creation and the first attempt; then its end."""
    execution, task = uuid.uuid4(), uuid.uuid4()
    name = f"public::embedded::{workflow}::load"
    created: list[j.JournalEvent] = [
        j.ExecutionCreated(
            execution_id=execution,
            pipeline_name=workflow,
            pipeline_version="0" * 16,
            context_id=None,
            context_json=None,
            tasks=(j.NewTask(id=task, task_name=name, max_attempts=2),),
            at=at(0),
        ),
        j.ExecutionRunning(execution_id=execution, at=at(0)),
        j.TaskStarted(task_execution_id=task, attempt=1, at=at(0)),
    ]
    end: list[j.JournalEvent]
    if fails:
        end = [
            j.TaskRetryScheduled(
                task_execution_id=task, attempt=2, retry_at=at(1), error="x", at=at(0.5)
            ),
            j.TaskStarted(task_execution_id=task, attempt=2, at=at(1)),
            j.TaskFailed(task_execution_id=task, error="x", at=at(4)),
            j.ExecutionFinished(
                execution_id=execution,
                status="Failed",
                context_id=None,
                error="x",
                at=at(4),
            ),
        ]
    else:
        end = [
            j.TaskCompleted(
                task_execution_id=task,
                execution_id=execution,
                task_name=name,
                context_id=None,
                context_json=None,
                at=at(0.02),
            ),
            j.ExecutionFinished(
                execution_id=execution,
                status="Completed",
                context_id=None,
                error=None,
                at=at(0.02),
            ),
        ]
    return created, end


def sample(text: str, name: str) -> float:
    """The value of the one sample line starting with ``name``."""
    values = [
        line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith(name + " ")
    ]
    assert len(values) == 1, (name, text)
    return float(values[0])


def test_metrics_count_executions_and_attempts() -> None:
    metrics = Metrics()
    created, end = run_of_one_execution()
    metrics.observe_batch(created, 0.002)
    assert metrics.in_progress == 1
    metrics.observe_batch(end, 0.004)
    failed_created, failed_end = run_of_one_execution("etl", fails=True)
    metrics.observe_batch(failed_created, 0.001)
    metrics.observe_batch(failed_end, 0.001)
    assert metrics.in_progress == 0
    text = metrics.render(queue_depth=3, database_up=True)
    assert sample(text, 'cloaca_executions_started_total{workflow="etl"}') == 2
    assert (
        sample(
            text, 'cloaca_executions_finished_total{workflow="etl",status="Completed"}'
        )
        == 1
    )
    assert sample(text, 'cloaca_executions_failed_total{workflow="etl"}') == 1
    assert sample(text, "cloaca_queue_depth") == 3
    assert sample(text, "cloaca_database_up") == 1
    attempt = (
        "cloaca_task_attempt_duration_seconds_{}"
        '{{workflow="etl",task="load",outcome="{}"{}}}'
    )
    assert sample(text, attempt.format("count", "completed", "")) == 1
    assert sample(text, attempt.format("sum", "completed", "")) == pytest.approx(0.02)
    assert sample(text, attempt.format("bucket", "completed", ',le="0.01"')) == 0
    assert sample(text, attempt.format("bucket", "completed", ',le="0.025"')) == 1
    assert sample(text, attempt.format("count", "retried", "")) == 1
    assert sample(text, attempt.format("sum", "failed", "")) == pytest.approx(3.0)
    assert sample(text, "cloaca_journal_batch_size_count") == 4
    assert sample(text, "cloaca_journal_batch_size_sum") == 3 + 2 + 3 + 4
    assert sample(text, 'cloaca_journal_commit_seconds_bucket{le="+Inf"}') == 4
    assert "# TYPE cloaca_task_attempt_duration_seconds histogram" in text


def test_histogram_buckets_are_cumulative_and_labels_escaped() -> None:
    histogram = Histogram([1.0, 2.0])
    for value in (0.5, 1.0, 1.5, 5.0):
        histogram.observe(value, (("task", 'a"b\\c'),))
    lines = list(histogram.samples("h"))
    assert lines == [
        'h_bucket{task="a\\"b\\\\c",le="1"} 2',
        'h_bucket{task="a\\"b\\\\c",le="2"} 3',
        'h_bucket{task="a\\"b\\\\c",le="+Inf"} 4',
        'h_sum{task="a\\"b\\\\c"} 8',
        'h_count{task="a\\"b\\\\c"} 4',
    ]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store("sqlite://" + str(tmp_path / "health.db"))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_metered_store_counts_only_what_it_committed(store: Store) -> None:
    metrics = Metrics()
    metered = MeteredStore(store, metrics)
    created, end = run_of_one_execution()
    await metered.apply(created)
    await metered.apply(end)
    execution_id = created[0].execution_id  # type: ignore[union-attr]
    row = await metered.get_execution(execution_id)
    assert row is not None
    assert row.status == "Completed"
    text = metrics.render(queue_depth=None, database_up=True)
    assert sample(text, 'cloaca_executions_started_total{workflow="etl"}') == 1
    assert not any(line.startswith("cloaca_queue_depth ") for line in text.splitlines())
    assert metered.display_url == store.display_url
    with pytest.raises(StorageError):
        await metered.apply(
            [j.TaskStarted(task_execution_id=uuid.uuid4(), attempt=1, at=at(9))]
        )
    assert metrics.batch_sizes.count() == 2


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            try:
                data += await stream.receive()
            except anyio.EndOfStream:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def test_health_server_over_http(store: Store) -> None:
    metrics = Metrics()
    server = HealthServer(metrics, store)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            port = await tg.start(server.serve, "127.0.0.1", 0)
            assert await http_get(port, "/healthz") == (200, '{"status": "ok"}\n')
            status, body = await http_get(port, "/metrics?x=1")
            assert status == 200
            assert sample(body, "cloaca_queue_depth") == 0
            assert sample(body, "cloaca_database_up") == 1
            assert (await http_get(port, "/nope"))[0] == 404
            assert (await http_get(port, "/healthz", "POST"))[0] == 405
            assert await http_get(port, "/healthz", "HEAD") == (200, "")
            server.stopping = True
            assert await http_get(port, "/healthz") == (503, '{"status":"stopping"}\n')
            tg.cancel_scope.cancel()


async def test_health_reports_an_unusable_database(store: Store) -> None:
    server = HealthServer(Metrics(), store)
    await store.close()  # a closed store fails every query, as a lost database does
    status, _, body = await server.respond("GET", "/healthz")
    assert (status, body) == (503, b'{"status":"database unavailable"}\n')
    status, _, body = await server.respond("GET", "/metrics")
    assert status == 200
    assert sample(body.decode(), "cloaca_database_up") == 0
