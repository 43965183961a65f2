"""Multi-runner claims and heartbeats: the runtime side of execution leases.

Several runner processes may share one PostgreSQL database (DESIGN.md,
Scale-out). Every runtime has a runner id; it holds a lease on each execution it
drives, taken in the batch that creates the execution or by a claim
(``claim_executions``: ``FOR UPDATE SKIP LOCKED`` plus a conditional upsert,
after procrastinate's ``fetch_job``). The ``LeaseKeeper`` actor renews all of
this runner's leases in one statement every third of the lease time, and tells
the scheduler about executions another runner took over. A runner that dies
stops renewing; once its leases expire, the intake of any other runner claims
the executions, resets their interrupted attempts (start-up recovery, budgeted by
the task's attempts) and resumes them. Every journal batch is checked against
the leases in its own transaction (``Persistence``), so the completion of a
runner whose lease was taken over is refused. Graceful shutdown releases every
lease at once and wakes the other runners (``NOTIFY``).

SQLite has no leases (``lease_store_for`` answers None): the runtime works as
before there.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Final

import msgspec

from actors import Actor, ActorRef
from cloaca import registry
from cloaca.logging import get_logger
from cloaca.runtime.messages import LeasesLost
from cloaca.runtime.recovery import plan_recovery
from cloaca.storage.errors import StorageError
from cloaca.storage.offers import offer_store_for
from cloaca.storage.protocol import ExecutionRow, LeaseListener, LeaseStore, Store

logger = get_logger(__name__)

DEFAULT_LEASE_TTL: Final = 30.0
"""Seconds a lease lasts without renewal; a dead runner's work waits this long."""

LEASE_TTL_ENV: Final = "CLOACA_LEASE_TTL_SECONDS"
"""Environment variable that overrides ``DEFAULT_LEASE_TTL`` (no config field
exists for it: ``DefaultRunnerConfig`` has exactly the reference's 14)."""

FINAL_STATUSES: Final = frozenset({"Completed", "Failed", "Cancelled"})


def lease_ttl_from_env(default: float = DEFAULT_LEASE_TTL) -> float:
    """The lease time: ``CLOACA_LEASE_TTL_SECONDS`` if set and valid, else ``default``.

    Raises:
        ValueError: The variable is set but is not a positive number.
    """
    raw = os.environ.get(LEASE_TTL_ENV)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise ValueError(
            f"{LEASE_TTL_ENV} must be a positive number of seconds, not {raw!r}"
        )
    return value


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """How one runtime holds leases.

    Attributes:
        store: The lease store beside the runtime's store.
        runner_id: This runtime's identity in the lease table.
        ttl: Seconds a lease lasts without renewal.
    """

    store: Any
    runner_id: uuid.UUID
    ttl: float

    @property
    def leases(self) -> LeaseStore:
        """The store, typed (msgspec cannot hold a Protocol-typed field)."""
        leases: LeaseStore = self.store
        return leases

    @property
    def heartbeat_interval(self) -> float:
        """Renew three times per lease time, so two missed beats are survivable."""
        return self.ttl / 3


async def claim_executions(
    lease: Lease,
    store: Store,
    *,
    limit: int,
    recover: bool,
    at: datetime,
    skip: Sequence[uuid.UUID] = (),
) -> list[ExecutionRow]:
    """Claim up to ``limit`` executions nobody drives; return them ready to resume.

    ``Pending`` executions (submitted through the database) are always claimed;
    with ``recover``, so are ``Running`` ones whose lease expired: their
    attempts left ``Running`` are reset or, past their budget, abandoned
    (``plan_recovery``), in a batch written under the new lease.

    Args:
        lease: This runtime's lease settings.
        store: The runtime's store, for reading the claimed executions.
        limit: Most executions to take (the runner's spare capacity).
        recover: Whether executions abandoned by a dead runner are taken too.
        at: The time recorded for recovery entries.
        skip: Executions this runtime drives already.
    """
    statuses = ("Pending", "Running") if recover else ("Pending",)
    ids = await lease.leases.claim(
        runner_id=lease.runner_id,
        statuses=statuses,
        workflows=registry.workflow_names(),
        limit=limit,
        ttl=lease.ttl,
    )
    known = set(skip)
    taken = [execution_id for execution_id in ids if execution_id not in known]
    offers = offer_store_for(lease.leases)
    if offers is not None and taken:
        # A previous owner's offers: their results would be refused now.
        try:
            await offers.drop_for_executions(taken)
        except StorageError as exc:
            # Harmless if left: nobody can claim them, housekeeping drops them.
            logger.warning("lease.stale_offers_kept", error=str(exc))
    rows: list[ExecutionRow] = []
    for execution_id in ids:
        if execution_id in known:
            continue  # our own lease had lapsed and nobody took it: still ours
        row = await store.get_execution(execution_id)
        if row is None or row.status in FINAL_STATUSES:
            continue
        entries = plan_recovery([row], at)
        if entries:
            await lease.leases.apply_leased(
                entries, runner_id=lease.runner_id, touched=[row.id], ttl=lease.ttl
            )
            logger.info(
                "lease.execution_recovered",
                execution_id=str(row.id),
                entries=len(entries),
            )
            row = await store.get_execution(execution_id)
            if row is None or row.status in FINAL_STATUSES:
                continue
        rows.append(row)
    return rows


async def kept_listening(
    listener: LeaseListener | None,
    listen: Callable[[], Awaitable[LeaseListener]],
    *,
    failed_event: str,
) -> LeaseListener | None:
    """``listener`` while it is alive, else a new one (None if that failed).

    Wake-ups are only a shortcut past the polls, so a listener that cannot be
    opened is logged as ``failed_event`` and tried again by the caller's next
    round.
    """
    if listener is not None and listener.alive:
        return listener
    if listener is not None:
        await listener.aclose()
    try:
        return await listen()
    except StorageError as exc:
        logger.warning(failed_event, error=str(exc))
        return None


class Beat(msgspec.Struct, frozen=True):
    """Renew the leases now (sent by the LeaseKeeper to itself)."""


_BEAT = Beat()


class LeaseKeeper(Actor[Beat]):
    """Heartbeats this runner's leases and reports the ones it lost.

    Args:
        lease: This runtime's lease settings.
        scheduler: The scheduler's ref (told ``LeasesLost``).
        owned: The executions this runtime drives (shared with the scheduler).
        keep_listening: Called on every beat; re-opens the wake-up listener if
            its connection was lost.
    """

    mailbox_capacity: ClassVar[float] = 2

    def __init__(
        self,
        lease: Lease,
        scheduler: Callable[[], ActorRef[Any]],
        owned: set[uuid.UUID],
        keep_listening: Callable[[], Any],
    ) -> None:
        self._lease = lease
        self._scheduler = scheduler
        self._owned = owned
        self._keep_listening = keep_listening

    async def on_start(self) -> None:
        """Start beating."""
        self.ref.send_nowait(_BEAT)

    async def handle(self, message: Beat) -> None:
        """One renewal, then the next after the heartbeat interval."""
        lease = self._lease
        try:
            lost = await lease.leases.heartbeat(
                runner_id=lease.runner_id, ttl=lease.ttl, owned=tuple(self._owned)
            )
        except StorageError as exc:
            # Writes stay safe without renewals (each batch checks its leases);
            # the next beat tries again.
            logger.warning("lease.heartbeat_failed", error=str(exc))
        else:
            if lost:
                self._scheduler().send_nowait(LeasesLost(execution_ids=frozenset(lost)))
        try:
            await self._keep_listening()
        except StorageError as exc:
            logger.warning("lease.listen_failed", error=str(exc))
        await self.clock.sleep(lease.heartbeat_interval)
        self.ref.send_nowait(_BEAT)
