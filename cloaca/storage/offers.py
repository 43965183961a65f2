"""Task offers: ready attempts a busy runner leaves for runners with spare slots.

The storage contract of task-level work sharing (DESIGN.md, Scale-out). The owner
of an execution, when its executor is full and other runners are alive, offers
an attempt (``offer``); a runner with free slots claims it (``claim``, under a
claim it renews like a lease), runs the task body and posts the result
(``post_result``); the owner takes the result (``take_results``) and journals it
under its execution lease, so only the owner ever records a completion. The
owner may take an offer back to run it itself while nobody holds a live claim on
it (``withdraw``). Only PostgreSQL has offers (``offer_store_for``).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from cloaca.storage.protocol import LeaseListener

__all__ = (
    "ClaimedOffer",
    "OfferResult",
    "OfferState",
    "OfferStore",
    "offer_store_for",
)


class ClaimedOffer(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt this runner claimed from another runner's offers."""

    task_execution_id: uuid.UUID
    execution_id: uuid.UUID
    owner_id: uuid.UUID
    task_name: str
    attempt: int
    input_json: str


class OfferResult(msgspec.Struct, frozen=True, kw_only=True):
    """A finished offer as its owner reads it: an output or an error."""

    task_execution_id: uuid.UUID
    output_json: str | None
    error: str | None


class OfferState(msgspec.Struct, frozen=True, kw_only=True):
    """How an offer stands, for its waiting owner.

    Attributes:
        claimed: Some runner holds a live claim on it.
        claims: How many times it was claimed (each claimer that died counts).
        finished: A result was posted and waits to be taken.
    """

    claimed: bool
    claims: int
    finished: bool


class OfferStore(Protocol):
    """Task offers beside a lease store (see the module)."""

    async def announce(
        self, runner_id: uuid.UUID, capacity: int, free: int, ttl: float
    ) -> int:
        """Announce this runner alive for ``ttl`` s; return the peers' free slots.

        ``free`` is how many of this runner's ``capacity`` slots are free now;
        the answer sums the other live runners' at their last announcement (0
        when alone or when every other runner is full).
        """
        ...

    async def tidy(self) -> None:
        """Forget long-dead runners and offers of executions nobody leases."""
        ...

    async def leave(self, runner_id: uuid.UUID) -> None:
        """Graceful leave: forget the runner, drop its offers, hand back its claims."""
        ...

    async def offer(
        self,
        *,
        task_execution_id: uuid.UUID,
        execution_id: uuid.UUID,
        owner_id: uuid.UUID,
        task_name: str,
        attempt: int,
        input_json: str,
    ) -> None:
        """Offer one attempt to the other runners and wake them."""
        ...

    async def withdraw(self, task_execution_id: uuid.UUID, owner_id: uuid.UUID) -> bool:
        """Take an offer back to run it here.

        False when a runner holds a live claim on it, or it is finished or gone.
        """
        ...

    async def state(
        self, task_execution_id: uuid.UUID, owner_id: uuid.UUID
    ) -> OfferState | None:
        """How the offer stands; None once it is gone (taken over or read)."""
        ...

    async def claim(
        self,
        *,
        runner_id: uuid.UUID,
        task_names: Sequence[str],
        limit: int,
        ttl: float,
        max_claims: int,
    ) -> list[ClaimedOffer]:
        """Claim up to ``limit`` open offers of other runners, oldest first.

        Only offers whose owners still hold their execution's lease and that
        were claimed fewer than ``max_claims`` times before.
        """
        ...

    async def post_result(
        self,
        task_execution_id: uuid.UUID,
        runner_id: uuid.UUID,
        *,
        attempt: int,
        output_json: str | None,
        error: str | None,
    ) -> bool:
        """Post the result of ``attempt`` and wake its owner.

        False (nothing written) when the claim is no longer ours or the offer
        is of a later attempt.
        """
        ...

    async def renew_claims(
        self, runner_id: uuid.UUID, ttl: float, working: Sequence[uuid.UUID]
    ) -> int:
        """Extend the claims of ``runner_id`` in ``working``; hand back the others.

        A claim whose attempt no longer runs (its actor was stopped by a restart)
        must not be renewed forever: it is opened again and its owner woken.
        Returns how many were handed back.
        """
        ...

    async def hand_back(self, runner_id: uuid.UUID) -> int:
        """Give every unfinished claim of ``runner_id`` back; wake the others."""
        ...

    async def take_results(self, owner_id: uuid.UUID) -> list[OfferResult]:
        """Remove and return the finished offers of ``owner_id``."""
        ...

    async def drop_for_executions(self, execution_ids: Sequence[uuid.UUID]) -> None:
        """Drop the offers of executions this runner just took over."""
        ...

    async def listen(
        self,
        runner_id: uuid.UUID,
        *,
        on_offered: Callable[[], None],
        on_done: Callable[[], None],
    ) -> LeaseListener:
        """Listen for offers in this schema and results of ``runner_id``'s.

        ``on_offered`` runs when an offer appears, ``on_done`` when one of
        ``runner_id``'s offers finished (both on the loop).
        """
        ...


def offer_store_for(leases: object) -> OfferStore | None:
    """The offer store beside a lease store, or None where sharing does not apply."""
    module = sys.modules.get("cloaca.storage.pg_leases")
    if module is None or not isinstance(leases, module.PgLeaseStore):
        return None
    from cloaca.storage.pg_offers import PgOfferStore

    return PgOfferStore(leases.store)
