"""Executions submitted through the database, and the actor that claims them.

``submit_to_database`` writes a ``Pending`` execution with its task rows (SCHEMA.md
5 steps 1-2) from a process that runs no runtime (``cloaca execute``). A runtime's
``Intake`` actor looks for ``Pending`` executions every
``scheduler_poll_interval_ms`` and claims each with one conditional batch: the
execution becomes ``Running`` and its root tasks are marked ``Running`` through
``TaskStarted``, which the store applies only to ``Ready``/``NotStarted`` rows. A
second runner racing for the same execution gets ``Conflict`` and leaves it. The
claimed execution is handed to the scheduler like a recovered one.

A runtime's own executions are written ``Running`` in the batch that creates
them, so ``Pending`` always means "submitted, not yet claimed".

With leases (several runners on PostgreSQL, ``cloaca.runtime.leases``) a poll
claims leases instead, on executions that are ``Pending`` or whose runner died,
never more than the runner's spare capacity (``claim_limit``), so the rest stays
for the other runners. A wake-up (``NOTIFY`` of a submission or a released
lease, or one of this runner's executions ending while the last poll was short
of capacity) ends the wait between polls at once; the poll interval only remains
as a safety net.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import anyio
import msgspec

from actors import Actor, ActorRef
from cloaca import registry
from cloaca.logging import get_logger
from cloaca.runtime.leases import Lease, claim_executions
from cloaca.runtime.messages import ResumeExecutions
from cloaca.storage import journal as j, open_store
from cloaca.storage.errors import Conflict, StorageError
from cloaca.storage.leases import lease_store_for
from cloaca.storage.protocol import ExecutionRow, Store
from cloaca.workflow import graph_of

logger = get_logger(__name__)

PENDING = "Pending"
CLAIM_BATCH = 64
"""Executions looked at per poll."""


class UnknownWorkflowError(LookupError):
    """``submit_to_database`` was given a workflow name nobody registered."""


def _max_attempts(task_name: str) -> int:
    spec = registry.get_task(task_name)
    return max(1, spec.retry_policy.max_attempts) if spec is not None else 1


async def submit_to_database(
    url: str, workflow_name: str, context_json: str, *, schema: str | None = None
) -> uuid.UUID:
    """Write a ``Pending`` execution of ``workflow_name`` for a runtime to claim.

    The workflow must be registered in this process (its task rows are written
    with the execution). Returns the new execution's id.

    Raises:
        UnknownWorkflowError: ``workflow_name`` is not registered.
        StorageError: The database could not be opened or written.
    """
    workflow = registry.get_workflow(workflow_name)
    if workflow is None:
        raise UnknownWorkflowError(workflow_name)
    graph = graph_of(workflow)
    at = datetime.now(UTC)
    execution_id = uuid.uuid4()
    has_input = context_json != "{}"
    entry = j.ExecutionCreated(
        execution_id=execution_id,
        pipeline_name=workflow_name,
        pipeline_version=graph.version,
        context_id=uuid.uuid4() if has_input else None,
        context_json=context_json if has_input else None,
        tasks=tuple(
            j.NewTask(id=uuid.uuid4(), task_name=name, max_attempts=_max_attempts(name))
            for name in graph.task_names
        ),
        at=at,
    )
    store = open_store(url, pool_size=1, schema=schema)
    await store.open()
    try:
        await store.apply([entry])
        leases = lease_store_for(store)
        if leases is not None:
            try:
                await leases.notify_work()
            except StorageError as exc:
                # Committed already; the runners' slow poll finds it anyway.
                logger.warning("intake.notify_failed", error=str(exc))
    finally:
        await store.close()
    return execution_id


class Poll(msgspec.Struct, frozen=True):
    """Look for ``Pending`` executions now (sent by the Intake to itself)."""


_POLL = Poll()


class Intake(Actor[Poll]):
    """Claims executions submitted through the database."""

    mailbox_capacity: ClassVar[float] = 4

    def __init__(
        self,
        store: Store,
        scheduler: Any,
        owned: set[uuid.UUID],
        interval: float,
        *,
        lease: Lease | None = None,
        claim_limit: int = CLAIM_BATCH,
        recover: bool = True,
    ) -> None:
        self._store = store
        self._scheduler_ref = scheduler
        self._owned = owned
        self._interval = interval
        self._skipped: set[uuid.UUID] = set()
        self._lease = lease
        self._claim_limit = claim_limit
        self._recover = recover
        self._sleeping: anyio.CancelScope | None = None
        self._woken = False
        self._starved = False

    async def on_start(self) -> None:
        """Start polling."""
        self.ref.send_nowait(_POLL)

    def wake(self) -> None:
        """Poll now instead of at the end of the interval (on the loop)."""
        if self._sleeping is not None:
            self._sleeping.cancel()
        else:
            self._woken = True

    async def handle(self, message: Poll) -> None:
        """One poll, then the next after the interval or a wake-up."""
        try:
            if self._lease is not None:
                await self._poll_leased(self._lease)
            else:
                await self._poll()
        except StorageError as exc:
            logger.warning("intake.poll_failed", error=str(exc))
        if self._woken:
            self._woken = False
        else:
            with anyio.CancelScope() as scope:
                self._sleeping = scope
                try:
                    await self.clock.sleep(self._interval)
                finally:
                    self._sleeping = None
            self._woken = False
        self.ref.send_nowait(_POLL)

    @property
    def starved(self) -> bool:
        """The last poll left work unclaimed for want of capacity, or may have."""
        return self._starved

    async def _poll_leased(self, lease: Lease) -> None:
        spare = self._claim_limit - len(self._owned)
        if spare <= 0:
            self._starved = True
            return
        at = datetime.fromtimestamp(self.clock.wall_ms() / 1000, UTC)
        rows = await claim_executions(
            lease,
            self._store,
            limit=min(spare, CLAIM_BATCH),
            recover=self._recover,
            at=at,
            skip=tuple(self._owned),
        )
        if rows:
            self._owned.update(row.id for row in rows)
            scheduler: ActorRef[Any] = self._scheduler_ref()
            scheduler.send_nowait(ResumeExecutions(rows=tuple(rows)))
            # There may be more than one claim's worth waiting.
            self._woken = len(rows) >= min(spare, CLAIM_BATCH)
        self._starved = len(rows) >= spare

    async def _poll(self) -> None:
        rows = await self._store.list_executions(status=PENDING, limit=CLAIM_BATCH)
        claimed: list[ExecutionRow] = []
        for row in rows:
            if row.id in self._owned or row.id in self._skipped:
                continue
            full = await self._claim(row.id)
            if full is not None:
                claimed.append(full)
        if claimed:
            scheduler: ActorRef[Any] = self._scheduler_ref()
            scheduler.send_nowait(ResumeExecutions(rows=tuple(claimed)))

    async def _claim(self, execution_id: uuid.UUID) -> ExecutionRow | None:
        row = await self._store.get_execution(execution_id)
        if row is None or row.status != PENDING:
            return None
        workflow = registry.get_workflow(row.pipeline_name)
        if workflow is None:
            # Not ours to run: another runtime may know this workflow.
            self._skipped.add(execution_id)
            logger.warning(
                "intake.workflow_unavailable",
                execution_id=str(execution_id),
                workflow=row.pipeline_name,
            )
            return None
        graph = graph_of(workflow)
        at = datetime.fromtimestamp(self.clock.wall_ms() / 1000, UTC)
        roots = [
            t
            for t in row.tasks
            if t.status in ("NotStarted", "Ready")
            and not graph.dependencies.get(t.task_name)
        ]
        entries: list[j.JournalEvent] = [j.ExecutionRunning(execution_id=row.id, at=at)]
        entries += [
            j.TaskStarted(task_execution_id=t.id, attempt=t.attempt, at=at)
            for t in roots
        ]
        try:
            await self._store.apply(entries)
        except Conflict:
            return None  # another runner claimed it first
        self._owned.add(execution_id)
        return await self._store.get_execution(execution_id)
