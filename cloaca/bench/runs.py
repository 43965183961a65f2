"""One run of a workload: a fresh database, its processes, their combined figures.

:func:`resolve_database` reads ``--db``. :func:`run_workload` makes the database
fresh for the run (SQLite: new files; PostgreSQL: a new schema, dropped afterwards),
splits the workload among ``processes`` worker processes (lanes draw their
executions from one shared pool, so the processes finish together), starts them,
waits until every one has opened its runner and warmed up, gives them the go
signal together, and combines what they measured
(:func:`cloaca.bench.harness.combine`). Process start, imports and schema creation
are therefore never measured.

With PostgreSQL the processes share the run's schema; each submits and runs its own
executions (a runner only runs executions it created or claimed). SQLite has one
writer per file, so each process gets its own file there; the figures then show how
the engine scales with processes, not how one SQLite file does.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import shutil
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final, Literal, cast

import anyio
import msgspec

from cloaca.bench.harness import Measurement, WorkerSpec, combine, measure
from cloaca.bench.workloads import Workload
from cloaca.storage.urls import detect_backend, mask_password, parse_sqlite_url

__all__ = (
    "BenchError",
    "Database",
    "Progress",
    "drop_schema",
    "resolve_database",
    "run_workload",
    "share_of",
    "take_from",
)

DEFAULT_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"

Progress = Callable[[int, int], None]
"""Progress callback: (executions done, executions in the run)."""

_SPEC: Final = msgspec.msgpack.Encoder()
_SPEC_DECODER: Final = msgspec.msgpack.Decoder(WorkerSpec)
_MEASUREMENT_DECODER: Final = msgspec.msgpack.Decoder(Measurement)


class BenchError(Exception):
    """A benchmark run could not be carried out (a worker failed or died)."""


class Database(msgspec.Struct, frozen=True, kw_only=True):
    """Where runs put their fresh databases.

    Attributes:
        kind: ``"sqlite"`` or ``"postgres"``.
        url: The PostgreSQL URL, or the SQLite URL runs derive files from (None:
            files in a new temporary directory).
        label: For tables, with any password masked.
    """

    kind: Literal["sqlite", "postgres"]
    url: str | None
    label: str


def resolve_database(arg: str) -> Database:
    """Read ``--db``: ``sqlite``, ``postgres`` or a database URL.

    Raises:
        ValueError: The URL is neither SQLite nor PostgreSQL.
    """
    if arg == "sqlite":
        return Database(kind="sqlite", url=None, label="sqlite file")
    if arg == "postgres":
        return Database(kind="postgres", url=DEFAULT_POSTGRES_URL, label="postgresql")
    try:
        backend = detect_backend(arg)
    except Exception as exc:
        raise ValueError(f"--db: {exc}") from exc
    kind: Literal["sqlite", "postgres"] = (
        "postgres" if backend == "postgres" else "sqlite"
    )
    return Database(kind=kind, url=arg, label=mask_password(arg))


async def drop_schema(url: str, schema: str) -> None:
    """Drop a run's PostgreSQL schema and everything in it."""
    import asyncpg

    from cloaca.storage.identifiers import quote_ident, schema_name
    from cloaca.storage.pg_url import parse_postgres_url

    conn = await asyncpg.connect(**parse_postgres_url(url).connect_kwargs())
    try:
        await conn.execute(
            "DROP SCHEMA IF EXISTS " + quote_ident(schema_name(schema)) + " CASCADE"
        )
    finally:
        await conn.close()


@contextmanager
def _fresh(
    database: Database, processes: int
) -> Iterator[tuple[list[str], str | None]]:
    """URLs (one per process) and schema of a fresh database; removed afterwards."""
    if database.kind == "postgres":
        assert database.url is not None
        schema = "bench_" + uuid.uuid4().hex[:16]
        try:
            yield [database.url] * processes, schema
        finally:
            anyio.run(drop_schema, database.url, schema)
        return
    if database.url is not None:
        location = parse_sqlite_url(database.url)
        if location.kind != "file":
            # In-memory and temporary databases are fresh by construction.
            yield [database.url] * processes, None
            return
        base = Path(location.path)
        tag = uuid.uuid4().hex[:8]
        paths = [
            base.with_name(f"{base.stem}.bench-{tag}-{index}{base.suffix or '.db'}")
            for index in range(processes)
        ]
        try:
            yield ["sqlite://" + str(path.resolve()) for path in paths], None
        finally:
            for path in paths:
                for extra in ("", "-wal", "-shm", "-journal"):
                    Path(str(path) + extra).unlink(missing_ok=True)
        return
    directory = Path(tempfile.mkdtemp(prefix="cloaca-bench-"))
    try:
        yield (
            [f"sqlite://{directory}/bench-{index}.db" for index in range(processes)],
            None,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def share_of(workload: Workload, processes: int, index: int) -> Workload:
    """Process ``index``'s share: its part of ``count`` and of ``in_flight``."""
    count = workload.count // processes + (
        1 if index < workload.count % processes else 0
    )
    count = max(1, count)
    if workload.in_flight >= workload.count:
        in_flight = count
    else:
        in_flight = max(1, workload.in_flight // processes)
    return msgspec.structs.replace(workload, count=count, in_flight=in_flight)


def run_workload(
    workload: Workload,
    database: Database,
    *,
    processes: int = 1,
    context_json: str = "{}",
    cpu_iterations: int | None = None,
    user_module: str | None = None,
    in_process: bool = False,
    progress: Progress | None = None,
    stall_seconds: float = 120.0,
) -> dict[str, float]:
    """Run ``workload`` once on a fresh database and return its figures.

    Args:
        workload: What to run (already scaled).
        database: Where.
        processes: Worker processes sharing the workload.
        context_json: Input context of every execution.
        cpu_iterations: The ``cpu`` body's loop iterations, the same everywhere.
        user_module: Module holding the ``user`` workload's workflow.
        in_process: Measure in this process instead of a worker (``processes``
            must be 1); peak RSS is then this process's.
        progress: Called as executions complete.
        stall_seconds: A worker that reports nothing (not even progress) for this
            long is taken as hung: the run fails instead of waiting forever.

    Raises:
        BenchError: A worker failed, died or stalled.
        ValueError: ``in_process`` with more than one process.
    """
    if in_process and processes != 1:
        raise ValueError("in_process runs use exactly one process")
    with _fresh(database, processes) as (urls, schema):
        specs = [
            WorkerSpec(
                workload=share_of(workload, processes, index),
                url=urls[index],
                schema=schema,
                context_json=context_json,
                cpu_iterations=cpu_iterations,
                user_module=user_module,
            )
            for index in range(processes)
        ]
        if in_process:
            total = specs[0].workload.count
            tick = None if progress is None else (lambda done: progress(done, total))
            parts = [measure(specs[0], lambda: None, tick)]
        else:
            parts = _in_workers(specs, progress, stall_seconds)
    figures = combine(workload, parts)
    figures["processes"] = float(processes)
    return figures


# -- worker processes ----------------------------------------------------------------


def _worker_main(conn: Connection, payload: bytes, pool: Any | None = None) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter).

    ``pool`` is the run's shared count of executions still to take (a
    ``multiprocessing.Value``), or None for a fixed share.
    """
    try:
        spec = _SPEC_DECODER.decode(payload)
        every = max(1, spec.workload.count // 100)

        def ready() -> None:
            conn.send(("ready", None))
            if conn.recv() != ("go", None):
                raise BenchError("the coordinator did not say go")

        def tick(done: int) -> None:
            if done % every == 0:
                conn.send(("progress", done))

        result = measure(spec, ready, tick, None if pool is None else take_from(pool))
        conn.send(("done", _SPEC.encode(result)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def take_from(pool: Any) -> Callable[[], bool]:
    """A ``take`` for :func:`cloaca.bench.harness.measure` drawing on ``pool``.

    ``pool`` is a ``multiprocessing.Value`` counting the run's executions not yet
    taken; every process of the run shares it.
    """

    def take() -> bool:
        with pool.get_lock():
            if pool.value <= 0:
                return False
            pool.value -= 1
            return True

    return take


def _in_workers(
    specs: list[WorkerSpec], progress: Progress | None, stall_seconds: float
) -> list[Measurement]:
    context = multiprocessing.get_context("spawn")
    # Several processes running lanes draw their executions from one pool, so
    # a process that gets more CPU (PostgreSQL's backends do not spread evenly)
    # runs more and none idles while another finishes a fixed share: the span
    # then measures the processes together, not the slower one alone. Bursts
    # (everything submitted at once) keep their fixed shares.
    lanes = all(spec.workload.in_flight < spec.workload.count for spec in specs)
    pool = (
        context.Value("q", sum(spec.workload.count for spec in specs))
        if len(specs) > 1 and lanes
        else None
    )
    workers = []
    for spec in specs:
        parent, child = context.Pipe()
        process = context.Process(
            target=_worker_main,
            args=(child, _SPEC.encode(spec), pool),
            name=f"cloaca-bench-{spec.workload.name}",
            daemon=True,
        )
        process.start()
        child.close()
        workers.append((parent, process))
    finished = False
    try:
        parts = _coordinate(workers, specs, progress, stall_seconds)
        finished = True
        return parts
    finally:
        for conn, process in workers:
            conn.close()
            # A worker of a failed run may be hung: do not wait for it.
            process.join(timeout=30 if finished else 0)
            if process.is_alive():
                process.kill()
                process.join()
            process.close()


def _coordinate(
    workers: list[tuple[Connection, Any]],
    specs: list[WorkerSpec],
    progress: Progress | None,
    stall_seconds: float,
) -> list[Measurement]:
    total = sum(spec.workload.count for spec in specs)
    done = [0] * len(workers)
    results: list[Measurement | None] = [None] * len(workers)
    waiting_ready = set(range(len(workers)))
    by_conn = {conn: index for index, (conn, _) in enumerate(workers)}
    open_conns = dict(by_conn)
    while open_conns:
        arrived = multiprocessing.connection.wait(list(open_conns), stall_seconds)
        if not arrived:
            name = specs[0].workload.name
            raise BenchError(
                f"{name!r} stalled: no worker reported anything for {stall_seconds:g}s "
                f"({sum(done)} of {total} executions done)"
            )
        for ready in arrived:
            conn = cast(Connection, ready)
            index = by_conn[conn]
            try:
                kind, value = conn.recv()
            except EOFError:
                code = workers[index][1].exitcode
                raise BenchError(
                    f"worker {index} of {specs[index].workload.name!r} died "
                    f"(exit code {code}) without reporting"
                ) from None
            if kind == "ready":
                waiting_ready.discard(index)
                if not waiting_ready:
                    # Everyone is open and warm: start the measured part together.
                    for other, _ in workers:
                        other.send(("go", None))
            elif kind == "progress":
                done[index] = value
                if progress is not None:
                    progress(sum(done), total)
            elif kind == "done":
                results[index] = _MEASUREMENT_DECODER.decode(value)
                del open_conns[conn]
            else:
                raise BenchError(
                    f"worker {index} of {specs[index].workload.name!r} failed:\n{value}"
                )
    if progress is not None:
        progress(total, total)
    return [result for result in results if result is not None]
