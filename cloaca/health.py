"""The health and metrics endpoint of ``cloaca run --health-port``.

Internal: no stability guarantee (the HTTP paths and metric names are the
contract, not these classes). ``Metrics`` counts what the runtime commits:
``MeteredStore`` wraps the runtime's ``Store`` and feeds every journal batch that
became durable (and every row read back, for workflow and task names) to it, so a
number on ``/metrics`` never counts a transition the database does not hold.
``HealthServer`` is a small HTTP/1.1 server on anyio answering ``GET /healthz``
(200 ``{"status":"ok"}``, or 503 while stopping or when the database does not
answer) and ``GET /metrics`` (Prometheus text format 0.0.4):

* ``cloaca_executions_started_total{workflow}``, ``..._finished_total{workflow,
  status}``, ``..._failed_total{workflow}``, ``cloaca_executions_in_progress``;
* ``cloaca_task_attempt_duration_seconds{workflow,task,outcome}`` (histogram;
  outcome ``completed``, ``failed`` or ``retried``);
* ``cloaca_queue_depth`` (``Pending`` executions waiting to be claimed, read from
  the database at each scrape, counted up to 1000);
* ``cloaca_journal_batch_size`` and ``cloaca_journal_commit_seconds``
  (histograms of each group commit);
* ``cloaca_database_up`` and ``cloaca_info{version}``.

The exposition format is written here (about sixty lines) rather than through
``prometheus_client``, which would be a new dependency for four metric kinds.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import anyio
import anyio.abc

from cloaca.logging import get_logger
from cloaca.storage import journal as j
from cloaca.storage.errors import StorageError
from cloaca.storage.leases import lease_store_for
from cloaca.storage.protocol import ExecutionRow, Store

__all__ = ("HealthServer", "Histogram", "MeteredStore", "Metrics")

logger = get_logger(__name__)

DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
)  # fmt: skip
BATCH_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
COMMIT_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
QUEUE_DEPTH_CAP: Final = 1000
"""Pending executions counted per scrape, at most (one bounded query)."""

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = [*labels, extra] if extra is not None else list(labels)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Histogram:
    """A Prometheus histogram with fixed buckets, per label set."""

    __slots__ = ("_buckets", "_series")

    def __init__(self, buckets: Sequence[float]) -> None:
        self._buckets = tuple(buckets)
        # labels -> (count per bucket, not cumulative; +Inf last), sum
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, labels: Labels = ()) -> None:
        """Record one observation."""
        counts, total = self._series.setdefault(
            labels, ([0] * (len(self._buckets) + 1), [0.0])
        )
        counts[bisect.bisect_left(self._buckets, value)] += 1
        total[0] += value

    def count(self, labels: Labels = ()) -> int:
        """Observations recorded under ``labels``."""
        series = self._series.get(labels)
        return sum(series[0]) if series else 0

    def samples(self, name: str) -> Iterable[str]:
        """The ``_bucket``, ``_sum`` and ``_count`` lines of every label set."""
        for labels in sorted(self._series):
            counts, total = self._series[labels]
            running = 0
            for bound, count in zip(
                (*self._buckets, float("inf")), counts, strict=True
            ):
                running += count
                le = ("le", _number(bound))
                yield f"{name}_bucket{_labels(labels, le)} {running}"
            yield f"{name}_sum{_labels(labels)} {_number(total[0])}"
            yield f"{name}_count{_labels(labels)} {running}"


def _short(task_name: str) -> str:
    return task_name.rsplit("::", 1)[-1]


class Metrics:
    """What one runtime committed, counted for ``/metrics``."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.finished: dict[tuple[str, str], int] = {}
        self.failed: dict[str, int] = {}
        self.attempt_seconds = Histogram(DURATION_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.commit_seconds = Histogram(COMMIT_BUCKETS)
        self._in_progress: set[uuid.UUID] = set()
        self._workflows: dict[uuid.UUID, str] = {}
        self._tasks: dict[uuid.UUID, tuple[uuid.UUID, str]] = {}
        self._attempt_started: dict[uuid.UUID, datetime] = {}

    @property
    def in_progress(self) -> int:
        """Executions this runtime is running now."""
        return len(self._in_progress)

    def observe_rows(self, rows: Iterable[ExecutionRow], *, resumed: bool) -> None:
        """Learn workflow and task names from rows read back.

        ``resumed`` marks unfinished executions that recovery hands to this
        runtime: they are in progress here without starting here.
        """
        for row in rows:
            self._workflows[row.id] = row.pipeline_name
            for task in row.tasks:
                self._tasks[task.id] = (row.id, _short(task.task_name))
                if task.status == "Running" and task.started_at is not None:
                    self._attempt_started.setdefault(task.id, task.started_at)
            if resumed and row.status == "Running":
                self._in_progress.add(row.id)

    def _workflow(self, execution_id: uuid.UUID) -> str:
        return self._workflows.get(execution_id, "unknown")

    def _attempt_ended(self, task_id: uuid.UUID, at: datetime, outcome: str) -> None:
        started = self._attempt_started.pop(task_id, None)
        owner = self._tasks.get(task_id)
        if started is None or owner is None:
            return
        labels = (
            ("workflow", self._workflow(owner[0])),
            ("task", owner[1]),
            ("outcome", outcome),
        )
        self.attempt_seconds.observe(max(0.0, (at - started).total_seconds()), labels)

    def _forget(self, execution_id: uuid.UUID) -> None:
        self._in_progress.discard(execution_id)
        self._workflows.pop(execution_id, None)
        for task_id in [t for t, (e, _) in self._tasks.items() if e == execution_id]:
            del self._tasks[task_id]
            self._attempt_started.pop(task_id, None)

    def observe_batch(self, entries: Sequence[j.JournalEvent], seconds: float) -> None:
        """Count one committed batch of journal entries."""
        self.batch_sizes.observe(float(len(entries)))
        self.commit_seconds.observe(seconds)
        for entry in entries:
            self._observe(entry)

    def _observe(self, entry: j.JournalEvent) -> None:
        match entry:
            case j.ExecutionCreated():
                self._workflows[entry.execution_id] = entry.pipeline_name
                for task in entry.tasks:
                    self._tasks[task.id] = (entry.execution_id, _short(task.task_name))
            case j.ExecutionRunning():
                if entry.execution_id not in self._in_progress:
                    self._in_progress.add(entry.execution_id)
                    workflow = self._workflow(entry.execution_id)
                    self.started[workflow] = self.started.get(workflow, 0) + 1
            case j.TaskStarted():
                self._attempt_started[entry.task_execution_id] = entry.at
            case j.TaskCompleted():
                self._attempt_ended(entry.task_execution_id, entry.at, "completed")
            case j.TaskFailed():
                self._attempt_ended(entry.task_execution_id, entry.at, "failed")
            case j.TaskRetryScheduled():
                self._attempt_ended(entry.task_execution_id, entry.at, "retried")
            case j.TaskReset() | j.TaskAbandoned():
                self._attempt_started.pop(entry.task_execution_id, None)
            case j.ExecutionFinished():
                workflow = self._workflow(entry.execution_id)
                key = (workflow, entry.status)
                self.finished[key] = self.finished.get(key, 0) + 1
                if entry.status == "Failed":
                    self.failed[workflow] = self.failed.get(workflow, 0) + 1
                self._forget(entry.execution_id)
            case _:
                pass  # TaskReady, TaskSkipped: no metric

    def render(self, *, queue_depth: int | None, database_up: bool) -> str:
        """The Prometheus text exposition of every metric."""
        from cloaca import __version__

        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("cloaca_info", "gauge", "The running cloaca version.")
        out.append(f'cloaca_info{{version="{_escape(__version__)}"}} 1')
        family(
            "cloaca_executions_started_total",
            "counter",
            "Executions this runtime started running, by workflow.",
        )
        for workflow, n in sorted(self.started.items()):
            labels = _labels((("workflow", workflow),))
            out.append(f"cloaca_executions_started_total{labels} {n}")
        family(
            "cloaca_executions_finished_total",
            "counter",
            "Executions this runtime finished, by workflow and final status.",
        )
        for (workflow, status), n in sorted(self.finished.items()):
            labels = _labels((("workflow", workflow), ("status", status)))
            out.append(f"cloaca_executions_finished_total{labels} {n}")
        family(
            "cloaca_executions_failed_total",
            "counter",
            "Executions this runtime finished as Failed, by workflow.",
        )
        for workflow, n in sorted(self.failed.items()):
            labels = _labels((("workflow", workflow),))
            out.append(f"cloaca_executions_failed_total{labels} {n}")
        family(
            "cloaca_executions_in_progress",
            "gauge",
            "Executions this runtime is running.",
        )
        out.append(f"cloaca_executions_in_progress {self.in_progress}")
        family(
            "cloaca_task_attempt_duration_seconds",
            "histogram",
            "Duration of task attempts, by workflow, task and outcome.",
        )
        out.extend(self.attempt_seconds.samples("cloaca_task_attempt_duration_seconds"))
        family(
            "cloaca_queue_depth",
            "gauge",
            f"Pending executions waiting to be claimed (counted up to "
            f"{QUEUE_DEPTH_CAP}).",
        )
        if queue_depth is not None:
            out.append(f"cloaca_queue_depth {queue_depth}")
        family(
            "cloaca_journal_batch_size",
            "histogram",
            "Journal entries written per group commit.",
        )
        out.extend(self.batch_sizes.samples("cloaca_journal_batch_size"))
        family(
            "cloaca_journal_commit_seconds",
            "histogram",
            "Latency of each group commit.",
        )
        out.extend(self.commit_seconds.samples("cloaca_journal_commit_seconds"))
        family(
            "cloaca_database_up",
            "gauge",
            "1 when the database answered this scrape.",
        )
        out.append(f"cloaca_database_up {1 if database_up else 0}")
        return "\n".join(out) + "\n"


class _MeteredLeases:
    """A lease store whose journal batches are counted like ``apply``'s."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def apply_leased(
        self, entries: Sequence[j.JournalEvent], **options: Any
    ) -> None:
        """Apply with the lease check, then count the batch once it is durable."""
        began = time.perf_counter()
        await self._inner.apply_leased(entries, **options)
        self._metrics.observe_batch(entries, time.perf_counter() - began)


class MeteredStore:
    """A ``Store`` that reports what it commits and reads to ``Metrics``.

    Every other attribute (cron and trigger storage, ``schema``) is the inner
    store's, so the runtime sees the store it would have had.
    """

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def display_url(self) -> str:
        """The inner store's URL, password masked."""
        return self._inner.display_url

    async def open(self) -> None:
        """Open the inner store."""
        await self._inner.open()

    async def close(self) -> None:
        """Close the inner store."""
        await self._inner.close()

    async def apply(self, entries: Sequence[j.JournalEvent]) -> None:
        """Apply, then count the batch (only once it is durable)."""
        began = time.perf_counter()
        await self._inner.apply(entries)
        self._metrics.observe_batch(entries, time.perf_counter() - began)

    def lease_store(self) -> _MeteredLeases | None:
        """The inner store's leases (PostgreSQL), with leased batches counted."""
        leases = lease_store_for(self._inner)
        return None if leases is None else _MeteredLeases(leases, self._metrics)

    async def load_unfinished(self) -> list[ExecutionRow]:
        """Unfinished executions; those running are in progress here now."""
        rows = await self._inner.load_unfinished()
        self._metrics.observe_rows(rows, resumed=True)
        return rows

    async def get_execution(self, execution_id: uuid.UUID) -> ExecutionRow | None:
        """One execution, whose names are remembered."""
        row = await self._inner.get_execution(execution_id)
        if row is not None:
            self._metrics.observe_rows((row,), resumed=False)
        return row

    async def list_executions(
        self,
        *,
        pipeline_name: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ExecutionRow]:
        """Executions newest first, as the inner store lists them."""
        return await self._inner.list_executions(
            pipeline_name=pipeline_name, status=status, limit=limit, offset=offset
        )


_REASONS: Final = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
_MAX_HEAD: Final = 16384
_REQUEST_TIMEOUT: Final = 5.0


class HealthServer:
    """Serves ``/healthz`` and ``/metrics`` for one runtime.

    Args:
        metrics: What ``/metrics`` reports.
        store: The runtime's store, queried for health and queue depth.
    """

    def __init__(self, metrics: Metrics, store: Store) -> None:
        self._metrics = metrics
        self._store = store
        self.stopping = False
        """Set when shutdown begins: ``/healthz`` then answers 503."""

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` until cancelled; report the bound port."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            bound = listener.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
            logger.info("health.listening", host=host, port=bound)
            task_status.started(bound)
            await listener.serve(self._handle)

    async def _probe(self) -> int | None:
        """Pending executions (``None`` when the database does not answer)."""
        try:
            with anyio.fail_after(_REQUEST_TIMEOUT):
                rows = await self._store.list_executions(
                    status="Pending", limit=QUEUE_DEPTH_CAP
                )
        except (StorageError, TimeoutError) as exc:
            logger.warning("health.database_unavailable", error=str(exc))
            return None
        return len(rows)

    async def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a request."""
        if path not in ("/healthz", "/metrics"):
            return 404, "text/plain; charset=utf-8", b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"method not allowed\n"
        if path == "/metrics":
            depth = await self._probe()
            text = self._metrics.render(
                queue_depth=depth, database_up=depth is not None
            )
            return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
        if self.stopping:
            return 503, "application/json", b'{"status":"stopping"}\n'
        if await self._probe() is None:
            return 503, "application/json", b'{"status":"database unavailable"}\n'
        return 200, "application/json", json.dumps({"status": "ok"}).encode() + b"\n"

    async def _read_head(self, stream: anyio.abc.ByteStream) -> bytes | None:
        head = b""
        while b"\r\n\r\n" not in head and b"\n\n" not in head:
            if len(head) > _MAX_HEAD:
                return None
            try:
                head += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
        return head

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(_REQUEST_TIMEOUT):
                    head = await self._read_head(stream)
            except TimeoutError:
                return
            parts = head.split(b"\r\n", 1)[0].split() if head else []
            if len(parts) != 3:
                return
            method = parts[0].decode("latin-1")
            path = parts[1].decode("latin-1").split("?", 1)[0]
            status, content_type, body = await self.respond(method, path)
            header = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            with contextlib.suppress(
                anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                await stream.send(header + (b"" if method == "HEAD" else body))
