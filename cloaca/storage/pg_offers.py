"""Task offers on PostgreSQL: ``PgOfferStore``, beside a ``PgLeaseStore``.

Implements ``cloaca.storage.offers.OfferStore`` with the statements of
``sql/postgres/offers.sql`` (migration ``cloaca_0002``). Claims are
``FOR UPDATE SKIP LOCKED`` and only reach offers whose owner still holds the
execution's lease; results are posted only while the claim is the poster's.
Wake-ups: ``NOTIFY cloaca_offers`` (payload: the schema) when an attempt is
offered, ``NOTIFY cloaca_offers_done`` (payload: schema and owner id) when one
finished; ``listen`` keeps one dedicated connection outside the pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Final

import asyncpg

from cloaca.storage.errors import StorageError
from cloaca.storage.offers import ClaimedOffer, OfferResult, OfferState
from cloaca.storage.pg_errors import DRIVER_ERRORS
from cloaca.storage.pg_listen import PgListener, open_listener
from cloaca.storage.postgres import PostgresStore
from cloaca.storage.queries import parse_queries

__all__ = ("PgOfferStore",)

OFFERED: Final = "cloaca_offers"
DONE: Final = "cloaca_offers_done"

DEAD_RUNNER_GRACE: Final = 3600.0
"""Seconds after expiry that a dead runner's row is kept (for ``cloaca doctor``)."""


def _offer_queries() -> dict[str, str]:
    from importlib import resources

    path = resources.files("cloaca.storage").joinpath("sql", "postgres", "offers.sql")
    return parse_queries(
        path.read_text(encoding="utf-8"), source="sql/postgres/offers.sql"
    )


_Q: Final = _offer_queries()


def _uuid(value: uuid.UUID) -> uuid.UUID:
    # asyncpg hands out its own uuid.UUID subclass; callers compare with uuid.UUID.
    return uuid.UUID(bytes=value.bytes)


class PgOfferStore:
    """``OfferStore`` on the pool of a ``PostgresStore`` (see the module)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def _pool(self) -> asyncpg.Pool:
        return self._store._require_pool()

    async def _fail(self, exc: BaseException, action: str) -> StorageError:
        return await self._store._failed(self._pool(), exc, action)

    async def announce(
        self, runner_id: uuid.UUID, capacity: int, free: int, ttl: float
    ) -> int:
        """Announce this runner; return the other live runners' free slots."""
        try:
            async with self._pool().acquire() as conn:
                peers = await conn.fetchval(
                    _Q["announce_runner"], runner_id, capacity, ttl, free
                )
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "announce this runner") from exc
        return int(peers or 0)

    async def tidy(self) -> None:
        """Forget long-dead runners and offers of executions nobody leases."""
        try:
            async with self._pool().acquire() as conn:
                await conn.execute(_Q["forget_dead_runners"], DEAD_RUNNER_GRACE)
                await conn.execute(_Q["forget_orphan_offers"])
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "tidy the offer tables") from exc

    async def leave(self, runner_id: uuid.UUID) -> None:
        """Forget the runner, drop its offers, hand back its claims; wake others."""
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                await conn.execute(_Q["forget_runner"], runner_id)
                await conn.execute(_Q["drop_owner_offers"], runner_id)
                handed = await conn.fetch(_Q["hand_back"], runner_id)
                if handed:
                    await conn.execute(_Q["notify_offered"])
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "leave the runner table") from exc

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
        """Offer one attempt and wake the other runners."""
        try:
            async with self._pool().acquire() as conn:
                await conn.execute(
                    _Q["offer_task"],
                    task_execution_id,
                    execution_id,
                    owner_id,
                    task_name,
                    attempt,
                    input_json,
                )
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, f"offer task {task_name}") from exc

    async def withdraw(self, task_execution_id: uuid.UUID, owner_id: uuid.UUID) -> bool:
        """Take an offer back while nobody holds a live claim on it."""
        try:
            async with self._pool().acquire() as conn:
                row = await conn.fetchrow(
                    _Q["withdraw_offer"], task_execution_id, owner_id
                )
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "withdraw a task offer") from exc
        return row is not None

    async def state(
        self, task_execution_id: uuid.UUID, owner_id: uuid.UUID
    ) -> OfferState | None:
        """How the offer stands; None once it is gone."""
        try:
            async with self._pool().acquire() as conn:
                row = await conn.fetchrow(
                    _Q["offer_state"], task_execution_id, owner_id
                )
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "read a task offer") from exc
        if row is None:
            return None
        return OfferState(
            claimed=row["claimed_by"] is not None and bool(row["claim_live"]),
            claims=int(row["claims"]),
            finished=bool(row["finished"]),
        )

    async def claim(
        self,
        *,
        runner_id: uuid.UUID,
        task_names: Sequence[str],
        limit: int,
        ttl: float,
        max_claims: int,
    ) -> list[ClaimedOffer]:
        """Claim up to ``limit`` open offers of other runners."""
        if limit <= 0 or not task_names:
            return []
        try:
            async with self._pool().acquire() as conn:
                rows = await conn.fetch(
                    _Q["claim_offers"],
                    runner_id,
                    ttl,
                    list(task_names),
                    limit,
                    max_claims,
                )
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "claim task offers") from exc
        return [
            ClaimedOffer(
                task_execution_id=_uuid(r["task_execution_id"]),
                execution_id=_uuid(r["execution_id"]),
                owner_id=_uuid(r["owner_id"]),
                task_name=r["task_name"],
                attempt=int(r["attempt"]),
                input_json=r["input_json"],
            )
            for r in rows
        ]

    async def post_result(
        self,
        task_execution_id: uuid.UUID,
        runner_id: uuid.UUID,
        *,
        attempt: int,
        output_json: str | None,
        error: str | None,
    ) -> bool:
        """Post a result while the claim is ours, and wake the owner."""
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                owner = await conn.fetchval(
                    _Q["post_result"],
                    task_execution_id,
                    runner_id,
                    output_json,
                    error,
                    attempt,
                )
                if owner is None:
                    return False
                await conn.execute(_Q["notify_done"], str(owner))
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "post a task result") from exc
        return True

    async def renew_claims(
        self, runner_id: uuid.UUID, ttl: float, working: Sequence[uuid.UUID]
    ) -> int:
        """Extend the claims in ``working``; hand back the runner's others."""
        ids = list(working)
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                await conn.execute(_Q["renew_claims"], runner_id, ttl, ids)
                handed = await conn.fetch(_Q["hand_back_abandoned"], runner_id, ids)
                if handed:
                    await conn.execute(_Q["notify_offered"])
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "renew task claims") from exc
        return len(handed)

    async def hand_back(self, runner_id: uuid.UUID) -> int:
        """Give every unfinished claim of ``runner_id`` back; wake the others."""
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                rows = await conn.fetch(_Q["hand_back"], runner_id)
                if rows:
                    await conn.execute(_Q["notify_offered"])
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "hand back task claims") from exc
        return len(rows)

    async def take_results(self, owner_id: uuid.UUID) -> list[OfferResult]:
        """Remove and return the finished offers of ``owner_id``."""
        try:
            async with self._pool().acquire() as conn:
                rows = await conn.fetch(_Q["take_results"], owner_id)
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "take task results") from exc
        return [
            OfferResult(
                task_execution_id=_uuid(r["task_execution_id"]),
                output_json=r["output_json"],
                error=r["error"],
            )
            for r in rows
        ]

    async def drop_for_executions(self, execution_ids: Sequence[uuid.UUID]) -> None:
        """Drop the offers of executions this runner just took over."""
        if not execution_ids:
            return
        try:
            async with self._pool().acquire() as conn:
                await conn.execute(_Q["drop_execution_offers"], list(execution_ids))
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "drop stale task offers") from exc

    async def listen(
        self,
        runner_id: uuid.UUID,
        *,
        on_offered: Callable[[], None],
        on_done: Callable[[], None],
    ) -> PgListener:
        """Listen for offers in this schema and for results of ``runner_id``'s.

        Raises:
            StorageError: The listening connection could not be opened.
        """
        return await open_listener(
            self._store,
            what="task offers",
            wakes=lambda schema: {
                OFFERED: (schema, on_offered),
                DONE: (f"{schema} {runner_id}", on_done),
            },
        )
