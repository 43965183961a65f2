"""Writing one batch of journal entries to PostgreSQL in few round trips.

A batch is applied atomically, and nearly every batch in one statement: the
batch is cut into *phases*, and each phase is one statement whose
data-modifying ``WITH`` parts write every row of the phase (one part per named
statement of ``queries.sql``, each set-based over one array per column with
``unnest``). A batch of a busy runner (new executions, starts, completions and
finishes of dozens of executions) is one phase, and ``write_batch`` sends it
alone, in its own implicit transaction: one round trip, commit included. A
batch of several phases (a task retried within one batch, say) is written by
``apply_batch`` inside a ``BEGIN``/``COMMIT``.

Phases. The parts of one statement all see the rows as they were before the
statement, and PostgreSQL does not say which of two changes of one row in one
statement wins. So two entries that write the same row go in different phases,
in batch order: a task may be started, retried, started again and completed in
one batch. An entry's rows are its execution row (``ExecutionCreated``,
``ExecutionRunning``, ``ExecutionFinished``) or its task row (every task entry,
including the metadata row keyed by that task), plus the task rows an
``ExecutionCreated`` inserts. Entries that write different rows commute and
share a phase. The only reads of rows another entry writes are foreign keys
(checked at the end of each statement, so a row inserted by another part of the
same statement counts) and a finished execution's ``context_id``, which names a
context a ``TaskCompleted`` inserted: the finish goes in that phase or a later
one. An entry's phase is therefore the earliest that follows every earlier
entry writing one of its rows and that is not before the context it names.
One exception saves a phase in every batch that submits work: the first
``ExecutionRunning`` of an execution the batch creates, and the first
``TaskReady`` or start of one of its tasks, are folded into the insert of that
row (the insert writes the status and times they would set).

Leases (``lease=``, used by ``pg_leases.PgLeaseStore.apply_leased``) join the
first statement as three more parts: insert the leases of executions the batch
creates, renew the ones it touches, delete the ones of executions it finishes.
Renewals and deletions lock the lease rows until the batch commits (so no
claimer can take one over in between) and return the rows they found; a touched
execution whose lease row was not this runner's is lost, and the batch raises
``LeaseLost`` before anything is committed.

Strictness, as on SQLite: each UPDATE part returns the ids it touched and the
statement returns the ids a part missed. An entry naming a row that does not
exist raises ``StorageError`` (naming the id), a start of a task that is not
``Ready``/``NotStarted`` raises ``Conflict`` (naming the task and its status), a
duplicate id raises ``Conflict`` from the unique index, and a naive ``datetime``
raises ``StorageError`` before anything is sent. A lost lease wins over those
(the other runner's writes are the likely reason for them). The raise happens
inside the batch's transaction, so nothing of the batch is kept (a statement
sent alone cannot raise from Python: it fails on the server instead, see
``batch_statement``, and the batch is then written again in a transaction,
which raises the exact error). Consequently
``apply`` is not idempotent: a batch that did commit fails with ``Conflict``
when applied again.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import asyncpg

from cloaca.storage.errors import Conflict, StorageError
from cloaca.storage.journal import (
    ExecutionCreated,
    ExecutionFinished,
    ExecutionRunning,
    JournalEvent,
    TaskAbandoned,
    TaskCompleted,
    TaskFailed,
    TaskReady,
    TaskReset,
    TaskRetryScheduled,
    TaskSkipped,
    TaskStarted,
)
from cloaca.storage.leases import LeaseLost
from cloaca.storage.queries import load_queries

__all__ = (
    "REFUSED",
    "BatchLease",
    "apply_batch",
    "batch_statement",
    "naive_utc",
    "plan_batch",
    "write_batch",
)

Row = Sequence[object]
Phase = list[JournalEvent]

# The parts of a statement, in the order they appear in it. Within a phase the
# order does not matter for correctness (its rows are disjoint); a fixed order
# keeps the statement text, hence asyncpg's prepared statement, per shape.
_INSERTS: Final = (
    "insert_contexts",
    "insert_executions",
    "insert_tasks",
    "upsert_task_metadata",
    "insert_recovery_events",
)
# UPDATE parts and the table whose rows they must all find (first column: id).
_UPDATES: Final[dict[str, str]] = {
    "mark_executions_running": "pipeline_executions",
    "mark_tasks_ready": "task_executions",
    "start_tasks": "task_executions",
    "complete_tasks": "task_executions",
    "schedule_task_retries": "task_executions",
    "fail_tasks": "task_executions",
    "skip_tasks": "task_executions",
    "reset_tasks": "task_executions",
    "abandon_tasks": "task_executions",
    "finish_executions": "pipeline_executions",
}
# Lease parts: ($1 execution ids, $2 runner id, $3 ttl seconds); the checked ones
# return the executions whose lease row they found.
_LEASE_INSERT: Final = "batch_insert_leases"
_LEASE_CHECKS: Final = ("batch_renew_leases", "batch_release_leases")
_ORDER: Final = (_LEASE_INSERT, *_LEASE_CHECKS, *_INSERTS, *_UPDATES)

_PARAM: Final = re.compile(r"\$(\d+)")
_STARTABLE: Final = ("NotStarted", "Ready")


def naive_utc(moment: datetime) -> datetime:
    """A ``timestamp without time zone`` value holding UTC wall-clock time.

    Args:
        moment: An aware time (journal entries carry aware UTC times).

    Returns:
        The same instant as a naive UTC ``datetime`` (SCHEMA.md 2.2).

    Raises:
        StorageError: ``moment`` is naive: its zone is unknown, so storing it
            could shift it by hours.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise StorageError(
            f"refusing naive datetime {moment.isoformat()}: journal times must be "
            "timezone-aware"
        )
    return moment.astimezone(UTC).replace(tzinfo=None)


def _json(value: dict[str, object]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class BatchLease:
    """The lease work of one batch (see the module docstring).

    Args:
        runner_id: The runner writing the batch.
        ttl: Seconds a renewed or new lease lasts.
        insert: Executions the batch creates (their leases are new).
        renew: Executions it touches and does not create or finish.
        release: Executions it finishes (their leases end with the batch).
    """

    __slots__ = ("insert", "release", "renew", "runner_id", "ttl")

    def __init__(
        self,
        *,
        runner_id: uuid.UUID,
        ttl: float,
        insert: Sequence[uuid.UUID] = (),
        renew: Sequence[uuid.UUID] = (),
        release: Sequence[uuid.UUID] = (),
    ) -> None:
        self.runner_id = runner_id
        self.ttl = ttl
        self.insert = list(insert)
        self.renew = list(renew)
        self.release = list(release)


def plan_batch(entries: Sequence[JournalEvent]) -> list[Phase]:
    """Cut a batch into phases whose entries write disjoint rows.

    Args:
        entries: The batch, in the order the runtime produced it.

    Returns:
        Phases in execution order, each with its entries in batch order. Two
        entries writing one row are in different phases, in batch order.
    """
    next_free: dict[uuid.UUID, int] = {}
    context_phase: dict[uuid.UUID, int] = {}
    # Rows an ExecutionCreated of this batch inserts and nothing wrote since, with
    # the status they will be inserted with.
    fresh: dict[uuid.UUID, str] = {}
    phases: list[Phase] = []
    for entry in entries:
        folded = _fold(entry, fresh)
        if folded is not None:
            row, status = folded
            fresh[row] = status
            phases[next_free[row] - 1].append(entry)
            continue
        rows: tuple[uuid.UUID, ...]
        earliest = 0
        match entry:
            case ExecutionCreated():
                rows = (entry.execution_id, *(t.id for t in entry.tasks))
            case ExecutionRunning():
                rows = (entry.execution_id,)
            case ExecutionFinished():
                rows = (entry.execution_id,)
                if entry.context_id is not None:
                    earliest = context_phase.get(entry.context_id, 0)
            case _:
                rows = (entry.task_execution_id,)
        # Execution and task ids are distinct random uuids: one namespace.
        phase = max(earliest, *(next_free.get(row, 0) for row in rows))
        for row in rows:
            next_free[row] = phase + 1
            fresh.pop(row, None)
        match entry:
            case ExecutionCreated():
                fresh[entry.execution_id] = "Pending"
                fresh.update((t.id, "NotStarted") for t in entry.tasks)
            case TaskCompleted() if entry.context_id is not None:
                context_phase[entry.context_id] = phase
            case _:
                pass
        while len(phases) <= phase:
            phases.append([])
        phases[phase].append(entry)
    return phases


def _fold(
    entry: JournalEvent, fresh: dict[uuid.UUID, str]
) -> tuple[uuid.UUID, str] | None:
    """The row and new status if ``entry`` can be folded into its row's insert.

    A first ``Running`` of a new execution, and a ``Ready`` or a start of a new
    task, only set columns of a row this batch inserts: the insert writes their
    values instead (one statement fewer). A start of a task that a folded start
    made ``Running`` is not folded, so that it is refused as the UPDATE would be.
    """
    match entry:
        case ExecutionRunning() if fresh.get(entry.execution_id) == "Pending":
            return entry.execution_id, "Running"
        case TaskReady() if fresh.get(entry.task_execution_id) in _STARTABLE:
            return entry.task_execution_id, "Ready"
        case TaskStarted() if fresh.get(entry.task_execution_id) in _STARTABLE:
            return entry.task_execution_id, "Running"
        case _:
            return None


class _Parts:
    """The rows of one statement, by part name (one array per column each).

    ``executions`` and ``tasks`` hold the rows this statement inserts, by id, so
    that entries folded into an insert (see ``_fold``) can set their columns.
    """

    __slots__ = ("executions", "rows", "tasks")

    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = {}
        self.executions: dict[uuid.UUID, list[object]] = {}
        self.tasks: dict[uuid.UUID, list[object]] = {}

    def add(self, name: str, row: Row) -> None:
        rows = self.rows.get(name)
        if rows is None:
            self.rows[name] = [row]
        else:
            rows.append(row)


def _created(parts: _Parts, e: ExecutionCreated) -> None:
    at = naive_utc(e.at)
    if e.context_id is not None:
        parts.add("insert_contexts", (e.context_id, e.context_json, at))
    execution: list[object] = [
        e.execution_id, e.pipeline_name, e.pipeline_version, e.context_id, at,
        "Pending", at,
    ]  # fmt: skip
    parts.add("insert_executions", execution)
    parts.executions[e.execution_id] = execution
    for t in e.tasks:
        # status, attempt, started_at, updated_at come last (see _ready, _started).
        task: list[object] = [
            t.id, e.execution_id, t.task_name, t.max_attempts, t.trigger_rules, at,
            "NotStarted", 1, None, at,
        ]  # fmt: skip
        parts.add("insert_tasks", task)
        parts.tasks[t.id] = task


def _completed(parts: _Parts, e: TaskCompleted) -> None:
    at = naive_utc(e.at)
    if e.context_id is not None:
        parts.add("insert_contexts", (e.context_id, e.context_json, at))
    parts.add(
        "upsert_task_metadata",
        (uuid.uuid4(), e.task_execution_id, e.execution_id, e.task_name,
         e.context_id, at),
    )  # fmt: skip
    parts.add("complete_tasks", (e.task_execution_id, at))


def _reset(parts: _Parts, e: TaskReset) -> None:
    at = naive_utc(e.at)
    parts.add("reset_tasks", (e.task_execution_id, e.recovery_attempt, at))
    details = _json(
        {
            "task_name": e.task_name,
            "previous_status": "Running",
            "new_status": "Ready",
            "recovery_attempt": e.recovery_attempt,
        }
    )
    parts.add(
        "insert_recovery_events",
        (uuid.uuid4(), e.execution_id, e.task_execution_id, "task_reset", at,
         details),
    )  # fmt: skip


def _abandoned(parts: _Parts, e: TaskAbandoned) -> None:
    at = naive_utc(e.at)
    parts.add("abandon_tasks", (e.task_execution_id, e.error, at))
    details = _json(
        {
            "task_name": e.task_name,
            "previous_status": "Running",
            "new_status": "Failed",
            "error": e.error,
        }
    )
    parts.add(
        "insert_recovery_events",
        (uuid.uuid4(), e.execution_id, e.task_execution_id, e.kind, at, details),
    )


def _running(parts: _Parts, e: ExecutionRunning) -> None:
    at = naive_utc(e.at)
    inserted = parts.executions.get(e.execution_id)
    if inserted is None:
        parts.add("mark_executions_running", (e.execution_id, at))
    else:
        inserted[5:7] = ("Running", at)


def _ready(parts: _Parts, e: TaskReady) -> None:
    at = naive_utc(e.at)
    inserted = parts.tasks.get(e.task_execution_id)
    if inserted is None:
        parts.add("mark_tasks_ready", (e.task_execution_id, at))
    else:
        inserted[6] = "Ready"
        inserted[9] = at


def _started(parts: _Parts, e: TaskStarted) -> None:
    at = naive_utc(e.at)
    inserted = parts.tasks.get(e.task_execution_id)
    if inserted is None:
        parts.add("start_tasks", (e.task_execution_id, e.attempt, at))
    else:
        inserted[6:10] = ("Running", e.attempt, at, at)


def _retry(parts: _Parts, e: TaskRetryScheduled) -> None:
    parts.add(
        "schedule_task_retries",
        (e.task_execution_id, e.attempt, naive_utc(e.retry_at), e.error,
         naive_utc(e.at)),
    )  # fmt: skip


def _failed(parts: _Parts, e: TaskFailed) -> None:
    parts.add("fail_tasks", (e.task_execution_id, e.error, naive_utc(e.at)))


def _skipped(parts: _Parts, e: TaskSkipped) -> None:
    parts.add("skip_tasks", (e.task_execution_id, e.reason, naive_utc(e.at)))


def _finished(parts: _Parts, e: ExecutionFinished) -> None:
    parts.add(
        "finish_executions",
        (e.execution_id, e.status, e.context_id, e.error, naive_utc(e.at)),
    )


def _write(parts: _Parts, entry: JournalEvent) -> None:
    match entry:
        case ExecutionCreated():
            _created(parts, entry)
        case ExecutionRunning():
            _running(parts, entry)
        case TaskReady():
            _ready(parts, entry)
        case TaskStarted():
            _started(parts, entry)
        case TaskCompleted():
            _completed(parts, entry)
        case TaskRetryScheduled():
            _retry(parts, entry)
        case TaskFailed():
            _failed(parts, entry)
        case TaskSkipped():
            _skipped(parts, entry)
        case TaskReset():
            _reset(parts, entry)
        case TaskAbandoned():
            _abandoned(parts, entry)
        case ExecutionFinished():
            _finished(parts, entry)


def _part_sql(name: str) -> tuple[str, int]:
    """A named statement as a ``WITH`` part body, and how many parameters it has."""
    text = load_queries("postgres")[name].rstrip().rstrip(";")
    return text, max(int(n) for n in _PARAM.findall(text))


def _renumber(text: str, offset: int) -> str:
    return _PARAM.sub(lambda m: f"${int(m.group(1)) + offset}", text)


_STATEMENTS: dict[tuple[tuple[str, ...], bool], str] = {}

REFUSED: Final = "cloaca: batch refused"
"""Marks the error a lone batch statement raises when a checked part missed rows."""


def batch_statement(shape: tuple[str, ...], *, alone: bool = False) -> str:
    """The one statement that runs the parts named in ``shape``, in that order.

    Each part is ``queries.sql``'s statement of that name with its parameters
    renumbered after the previous part's. Built once per shape (the text is
    package data only).

    Args:
        shape: Part names, a subsequence of the fixed part order.
        alone: The statement is the whole batch, run outside a transaction (its
            own implicit one). Instead of returning what a checked part missed,
            it then fails, so that the server rolls everything back: casting a
            text that starts with ``REFUSED`` to an integer raises
            ``invalid_text_representation`` (plain SQL has no RAISE).

    Returns:
        Unless ``alone``, a statement returning ``(part, id)`` for every id a
        checked part did not find (``part``: the part's index in ``shape``).
    """
    cached = _STATEMENTS.get((shape, alone))
    if cached is not None:
        return cached
    ctes: list[str] = []
    checks: list[str] = []
    offset = 0
    for index, name in enumerate(shape):
        body, count = _part_sql(name)
        body = _renumber(body, offset)
        ctes.append(f"p{index} AS (\n{body}\n)")
        if name in _UPDATES or name in _LEASE_CHECKS:
            checks.append(
                f"SELECT {index} AS part, w.id FROM unnest(${offset + 1}::uuid[]) "
                f"AS w (id) WHERE w.id NOT IN (SELECT id FROM p{index})"
            )
        offset += count
    if not checks:
        final = "SELECT NULL::integer AS part, NULL::uuid AS id WHERE false"
    elif alone:
        final = (
            f"SELECT ('{REFUSED}: ' || count(*) || ' rows missed')::integer\n"
            "FROM (\n" + "\nUNION ALL\n".join(checks) + "\n) AS missed\n"
            "HAVING count(*) > 0"
        )
    else:
        final = "\nUNION ALL\n".join(checks)
    statement = "WITH " + ",\n".join(ctes) + "\n" + final
    _STATEMENTS[(shape, alone)] = statement
    return statement


def _columns(rows: list[Row]) -> list[object]:
    """Rows to one list per column, the arrays the set-based parts take."""
    return [list(column) for column in zip(*rows, strict=True)]


def _lease_parts(lease: BatchLease) -> dict[str, list[object]]:
    args: dict[str, list[object]] = {}
    if lease.insert:
        args[_LEASE_INSERT] = [lease.insert, lease.runner_id, lease.ttl]
    if lease.renew:
        args["batch_renew_leases"] = [lease.renew, lease.runner_id, lease.ttl]
    if lease.release:
        args["batch_release_leases"] = [lease.release, lease.runner_id]
    return args


async def _refuse(conn: asyncpg.Connection, name: str, missing: set[uuid.UUID]) -> None:
    """Raise for ids an UPDATE part did not touch: absent rows, or refused starts."""
    table = _UPDATES[name]
    q = load_queries("postgres")
    statuses_query = q[
        "task_statuses" if table == "task_executions" else "execution_statuses"
    ]
    statuses = {r[0]: r[1] for r in await conn.fetch(statuses_query, list(missing))}
    absent = sorted(str(i) for i in missing if i not in statuses)
    if absent:
        raise StorageError(f"{table} has no row with id {', '.join(absent)}")
    # Only the conditional start skips existing rows (SCHEMA.md 5.4).
    refused = ", ".join(f"{i} is {statuses[i]}" for i in sorted(missing, key=str))
    raise Conflict(f"cannot start a task that is not Ready or NotStarted: {refused}")


def _shape(
    args_by_part: dict[str, list[object]],
) -> tuple[tuple[str, ...], list[object]]:
    shape = tuple(name for name in _ORDER if name in args_by_part)
    args: list[object] = []
    for name in shape:
        args.extend(args_by_part[name])
    return shape, args


async def _run(conn: asyncpg.Connection, args_by_part: dict[str, list[object]]) -> None:
    shape, args = _shape(args_by_part)
    missed = await conn.fetch(batch_statement(shape), *args)
    if not missed:
        return
    by_part: dict[int, set[uuid.UUID]] = {}
    for part, missing_id in missed:
        # asyncpg hands out its own uuid.UUID subclass; callers compare with uuid.UUID.
        by_part.setdefault(part, set()).add(uuid.UUID(bytes=missing_id.bytes))
    lost = {
        i for part, ids in by_part.items() if shape[part] in _LEASE_CHECKS for i in ids
    }
    if lost:
        raise LeaseLost(frozenset(lost))
    # Report the first part that missed rows, as the statements ran in this order.
    part = min(by_part)
    await _refuse(conn, shape[part], by_part[part])


def _statements(
    entries: Sequence[JournalEvent], lease: BatchLease | None
) -> list[dict[str, list[object]]]:
    """The arguments of each statement of a batch, by part name."""
    statements: list[dict[str, list[object]]] = []
    for phase in plan_batch(entries):
        parts = _Parts()
        for entry in phase:
            _write(parts, entry)
        statements.append({name: _columns(rows) for name, rows in parts.rows.items()})
    if lease is not None:
        lease_args = _lease_parts(lease)
        if statements:
            statements[0].update(lease_args)
        elif lease_args:
            statements.append(lease_args)
    return statements


async def apply_batch(
    conn: asyncpg.Connection,
    entries: Sequence[JournalEvent],
    *,
    lease: BatchLease | None = None,
) -> int:
    """Write ``entries`` on ``conn``, which must be inside a transaction.

    Args:
        conn: The connection, in the batch's transaction.
        entries: The batch, in order.
        lease: The batch's lease work, done in its first statement.

    Returns:
        The number of statements sent (one per phase, one for a batch that is
        only lease work).

    Raises:
        LeaseLost: ``lease`` named an execution whose lease row is not this
            runner's (checked before any other refusal).
        Conflict, StorageError: As described in the module docstring.
    """
    statements = _statements(entries, lease)
    for args_by_part in statements:
        await _run(conn, args_by_part)
    return len(statements)


async def write_batch(
    conn: asyncpg.Connection,
    entries: Sequence[JournalEvent],
    *,
    lease: BatchLease | None = None,
) -> None:
    """Write ``entries`` atomically on ``conn``, which must not be in a transaction.

    A batch of one statement (nearly every batch) is sent alone: its implicit
    transaction commits with it, one round trip instead of three (``BEGIN``,
    statement, ``COMMIT``), and just as durable. If a check refuses it, the
    server rolls it back and the batch is written again in a transaction by
    ``apply_batch``, which says exactly what was refused (or writes it, if what
    was missing has appeared meanwhile: every check is made again). Longer
    batches go to ``apply_batch`` at once.

    Args:
        conn: A connection outside any transaction.
        entries: The batch, in order.
        lease: The batch's lease work.

    Raises:
        LeaseLost, Conflict, StorageError: As ``apply_batch``.
    """
    statements = _statements(entries, lease)
    if not statements:
        return
    if len(statements) == 1:
        shape, args = _shape(statements[0])
        try:
            await conn.execute(batch_statement(shape, alone=True), *args)
            return
        except asyncpg.InvalidTextRepresentationError as exc:
            if REFUSED not in str(exc):
                raise
    async with conn.transaction():
        for args_by_part in statements:
            await _run(conn, args_by_part)
