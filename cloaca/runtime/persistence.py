"""The Persistence actor: the write-ahead journal with group commit.

Appends queue up in its mailbox. The first ``Append`` after a commit sends the
actor a ``Flush`` message, which lands *behind* every append already queued; when
the flush is handled, everything buffered so far is written in one transaction
(``Store.apply``) and the scheduler is told ``Committed(seq)``. An idle runner
therefore commits at once, and a busy one amortises each commit over all the
transitions that arrived while the previous commit ran (DESIGN.md, Durability).

A failed commit is retried with backoff on the clock; if the database stays
unusable the actor crashes and the runtime supervisor restarts it and everything
started after it (``rest_for_one``), which then rebuilds from the database.

With leases (several runners on PostgreSQL, ``cloaca.runtime.leases``) a batch is
written together with the check that this runner still holds the lease of every
execution in it. When the store refuses it (``LeaseLost``), the entries of the
executions taken over are dropped, the scheduler is told (``LeasesLost``) and the
rest of the batch is written at once: a stale runner's completion never lands.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from actors import Actor, ActorRef
from cloaca.logging import get_logger
from cloaca.runtime.messages import (
    Append,
    Committed,
    Flush,
    LeasesLost,
    LoadExecutions,
    PersistenceMsg,
    SchedulerGeneration,
)
from cloaca.storage.errors import Conflict, StorageError
from cloaca.storage.journal import JournalEvent
from cloaca.storage.leases import LeaseLost
from cloaca.storage.protocol import ExecutionRow, Store

if TYPE_CHECKING:
    from cloaca.runtime.leases import Lease

logger = get_logger(__name__)

COMMIT_ATTEMPTS = 5
"""Tries per batch before the actor gives up and crashes."""


class JournalStats:
    """Counters that locate a performance regression (benchmarks read them)."""

    __slots__ = ("batches", "commit_seconds", "entries")

    def __init__(self) -> None:
        self.batches = 0
        self.entries = 0
        self.commit_seconds = 0.0

    def as_dict(self) -> dict[str, float]:
        """Commits, mean batch size and mean commit latency in milliseconds."""
        return {
            "journal_commits": self.batches,
            "journal_entries": self.entries,
            "mean_batch_size": self.entries / self.batches if self.batches else 0.0,
            "mean_commit_ms": 1000 * self.commit_seconds / self.batches
            if self.batches
            else 0.0,
        }


class Persistence(Actor[PersistenceMsg]):
    """Owns the store; journals entries and answers read queries."""

    # Never full: results flow up into it with send_nowait (CONVENTIONS.md 4).
    mailbox_capacity: ClassVar[float] = math.inf

    def __init__(
        self,
        store: Store,
        scheduler: Callable[[], ActorRef[Any]],
        stats: JournalStats,
        generation: SchedulerGeneration,
        lease: Lease | None = None,
    ) -> None:
        self._lease = lease
        self._generation = generation
        self._store = store
        self._scheduler = scheduler
        self._stats = stats
        self._buffer: list[JournalEvent] = []
        self._owners: list[uuid.UUID | None] = []
        self._buffered_seq = 0
        self._buffered_generation = generation.value
        self._flush_pending = False

    async def on_start(self) -> None:
        """After a restart, refuse appends of the scheduler that is being replaced.

        Under ``rest_for_one`` a restart of Persistence restarts the scheduler
        too; its next incarnation writes the next generation. Appends still in
        the mailbox may depend on the batch that was lost with the crash.
        """
        if self.incarnation > 1:
            self._generation.value += 1

    async def handle(self, message: PersistenceMsg) -> Any:
        """Buffer appends, commit on flush, answer loads."""
        match message:
            case Append(
                entries=entries,
                seq=seq,
                generation=generation,
                execution_id=execution_id,
            ):
                if generation != self._generation.value:
                    return None  # written by a scheduler that has been replaced
                if self._buffered_generation != generation:
                    self._buffered_generation = generation
                    self._buffered_seq = 0
                self._buffer.extend(entries)
                self._owners.extend([execution_id] * len(entries))
                self._buffered_seq = max(self._buffered_seq, seq)
                if not self._flush_pending:
                    self._flush_pending = True
                    self.ref.send_nowait(Flush())
                return None
            case Flush():
                self._flush_pending = False
                await self._commit()
                return None
            case LoadExecutions(ids=ids):
                # Reads see everything appended before them.
                await self._commit()
                return await self._load(ids)

    async def on_stop(self, reason: object) -> None:
        """Write what is still buffered, so a graceful stop loses nothing."""
        if self._buffer:
            try:
                await self._commit()
            except StorageError:
                logger.exception("journal.flush_on_stop_failed")

    async def _commit(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        owners, self._owners = self._owners, []
        seq = self._buffered_seq
        generation = self._buffered_generation
        delay = 0.05
        attempt = 0
        while batch and attempt < COMMIT_ATTEMPTS:
            attempt += 1
            started = time.perf_counter()
            try:
                await self._write(batch, owners)
            except LeaseLost as lost:
                if attempt > 1:
                    # The earlier try may have committed (a finished execution's
                    # lease goes with it): rebuild from the database, as for a
                    # Conflict on a retry.
                    raise
                # Not a failure of the database: drop what is no longer ours and
                # write the rest now, without spending an attempt.
                attempt -= 1
                batch, owners = self._without(batch, owners, lost)
                self._scheduler().send_nowait(
                    LeasesLost(execution_ids=lost.execution_ids)
                )
                continue
            except StorageError as exc:
                if attempt == COMMIT_ATTEMPTS or (
                    attempt > 1 and isinstance(exc, Conflict)
                ):
                    # A conflict on a retry means the earlier try probably did
                    # commit before its connection died: rebuild from the database.
                    # Nothing in this batch was acknowledged; the crash makes the
                    # supervisor restart the scheduler, which rebuilds from what the
                    # database holds and re-runs the unacknowledged attempts.
                    raise
                logger.warning(
                    "journal.commit_failed",
                    attempt=attempt,
                    entries=len(batch),
                    error=str(exc),
                )
                await self.clock.sleep(delay)
                delay = min(delay * 4, 2.0)
                continue
            self._stats.batches += 1
            self._stats.entries += len(batch)
            self._stats.commit_seconds += time.perf_counter() - started
            break
        self._scheduler().send_nowait(Committed(seq=seq, generation=generation))

    async def _write(
        self, batch: list[JournalEvent], owners: list[uuid.UUID | None]
    ) -> None:
        lease = self._lease
        if lease is None:
            await self._store.apply(batch)
            return
        touched = sorted({o for o in owners if o is not None}, key=str)
        await lease.store.apply_leased(
            batch, runner_id=lease.runner_id, touched=touched, ttl=lease.ttl
        )

    @staticmethod
    def _without(
        batch: list[JournalEvent], owners: list[uuid.UUID | None], lost: LeaseLost
    ) -> tuple[list[JournalEvent], list[uuid.UUID | None]]:
        """The batch without the entries of executions whose lease was lost."""
        kept = [
            (entry, owner)
            for entry, owner in zip(batch, owners, strict=True)
            if owner not in lost.execution_ids
        ]
        if len(kept) == len(batch):
            # The store named an execution no append claims: nothing to drop,
            # so writing again would loop; let the supervisor rebuild instead.
            raise lost
        return [e for e, _ in kept], [o for _, o in kept]

    async def _load(self, ids: tuple[Any, ...] | None) -> list[ExecutionRow]:
        if ids is None:
            return await self._store.load_unfinished()
        rows = []
        for execution_id in ids:
            row = await self._store.get_execution(execution_id)
            if row is not None:
                rows.append(row)
        return rows
