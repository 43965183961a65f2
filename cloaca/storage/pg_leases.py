"""Execution leases on PostgreSQL: ``PgLeaseStore``, beside a ``PostgresStore``.

Implements the ``LeaseStore`` protocol on the store's asyncpg pool, with the
statements of ``sql/postgres/leases.sql`` (DESIGN.md, Scale-out). PostgreSQL is
the coordinator: claims are ``SELECT … FOR UPDATE SKIP LOCKED`` plus a
conditional upsert of the lease, lease times are the server's clock, and every
journal batch of a runner is written in one transaction with the renewal of the
leases it touches, so a runner whose lease was taken over cannot commit (its
batch raises ``LeaseLost`` and nothing of it is kept). Wake-ups travel by
``NOTIFY cloaca_work`` with the schema as payload; ``listen`` keeps one
dedicated connection outside the pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Final

import asyncpg

from cloaca.logging import get_logger
from cloaca.storage import journal as j
from cloaca.storage.errors import SchemaMismatch, StorageError
from cloaca.storage.leases import LeaseLost, execution_ids_of
from cloaca.storage.pg_apply import BatchLease, write_batch
from cloaca.storage.pg_errors import DRIVER_ERRORS
from cloaca.storage.pg_listen import PgListener, open_listener
from cloaca.storage.postgres import PostgresStore
from cloaca.storage.queries import parse_queries

__all__ = ("PgLeaseStore",)

logger = get_logger(__name__)

CHANNEL: Final = "cloaca_work"
"""The LISTEN/NOTIFY channel of work wake-ups (payload: the schema)."""


def _lease_queries() -> dict[str, str]:
    from importlib import resources

    path = resources.files("cloaca.storage").joinpath("sql", "postgres", "leases.sql")
    return parse_queries(
        path.read_text(encoding="utf-8"), source="sql/postgres/leases.sql"
    )


_Q: Final = _lease_queries()


def _ids(rows: Sequence[asyncpg.Record]) -> list[uuid.UUID]:
    # asyncpg hands out its own uuid.UUID subclass; callers compare with uuid.UUID.
    return [uuid.UUID(bytes=r[0].bytes) for r in rows]


class PgLeaseStore:
    """``LeaseStore`` on the pool of a ``PostgresStore`` (see the module).

    Args:
        store: The runner's store; it must be open before any call.
    """

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    @property
    def store(self) -> PostgresStore:
        """The store whose pool this lease store uses."""
        return self._store

    def _pool(self) -> asyncpg.Pool:
        return self._store._require_pool()

    async def _fail(self, exc: BaseException, action: str) -> StorageError:
        return await self._store._failed(self._pool(), exc, action)

    async def prepare(self) -> None:
        """Check that the lease table is there (migration ``cloaca_0001``).

        Opening the store applies the migration; a table missing here means the
        schema was changed behind cloaca's back.

        Raises:
            SchemaMismatch: ``cloaca_execution_leases`` does not exist.
        """
        pool = self._pool()
        try:
            async with pool.acquire() as conn:
                found = await conn.fetchval(_Q["leases_table_exists"])
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "look for the lease table") from exc
        if not found:
            raise SchemaMismatch(
                "the lease table cloaca_execution_leases is missing although "
                "migration cloaca_0001 is recorded",
            )

    async def apply_leased(
        self,
        entries: Sequence[j.JournalEvent],
        *,
        runner_id: uuid.UUID,
        touched: Sequence[uuid.UUID],
        ttl: float,
    ) -> None:
        """Write ``entries`` with the lease check in one transaction.

        Raises:
            LeaseLost: A touched execution's lease is held by another runner or
                missing; nothing was written.
            StorageError: As ``PostgresStore.apply``.
        """
        if not entries:
            return
        created, named, finished = execution_ids_of(entries)
        # The lease work rides in the batch's first statement (pg_apply): new
        # leases, renewals, and the release of finished executions, which checks
        # them as a renewal would. One created and finished here needs no lease.
        lease = BatchLease(
            runner_id=runner_id,
            ttl=ttl,
            insert=sorted(created - finished, key=str),
            renew=sorted((set(touched) | named) - created - finished, key=str),
            release=sorted(finished - created, key=str),
        )
        self._pool()  # raises StorageError as is if the store is not open
        try:
            async with self._store.journal_connection() as conn:
                await write_batch(conn, entries, lease=lease)
        except LeaseLost:
            raise
        except StorageError as exc:
            raise type(exc)(
                f"PostgreSQL {self._store.display_url} refused a batch of "
                f"{len(entries)} journal entries: {exc}",
                url=self._store.display_url,
            ) from exc
        except DRIVER_ERRORS as exc:
            raise await self._fail(
                exc, f"apply a leased batch of {len(entries)} journal entries"
            ) from exc

    async def claim(
        self,
        *,
        runner_id: uuid.UUID,
        statuses: Sequence[str],
        workflows: Sequence[str],
        limit: int,
        ttl: float,
    ) -> list[uuid.UUID]:
        """Take leases on up to ``limit`` unleased (or expired) executions."""
        if limit <= 0 or not workflows:
            return []
        pool = self._pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                candidates = _ids(
                    await conn.fetch(
                        _Q["claimable_executions"],
                        list(statuses),
                        list(workflows),
                        limit,
                    )
                )
                if not candidates:
                    return []
                return _ids(
                    await conn.fetch(_Q["take_leases"], candidates, runner_id, ttl)
                )
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "claim executions") from exc

    async def heartbeat(
        self, *, runner_id: uuid.UUID, ttl: float, owned: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Renew the leases of ``runner_id`` on ``owned``; return those others hold.

        A lease of this runner on an execution not in ``owned`` (taken by a claim
        whose answer was lost) is left to run out, so it is claimed again.
        """
        pool = self._pool()
        try:
            async with pool.acquire() as conn:
                if not owned:
                    return set()
                await conn.execute(_Q["heartbeat_leases"], runner_id, ttl, list(owned))
                rows = await conn.fetch(
                    _Q["leases_held_by_others"], list(owned), runner_id
                )
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "renew leases") from exc
        return set(_ids(rows))

    async def release(self, runner_id: uuid.UUID) -> int:
        """Drop every lease of ``runner_id`` and wake the other runners."""
        pool = self._pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(_Q["release_runner_leases"], runner_id)
                if rows:
                    # Sent at commit: the others look once the leases are gone.
                    await conn.execute(_Q["notify_work"])
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "release leases") from exc
        return len(rows)

    async def notify_work(self) -> None:
        """Wake the runners listening on this schema."""
        pool = self._pool()
        try:
            async with pool.acquire() as conn:
                await conn.execute(_Q["notify_work"])
        except DRIVER_ERRORS as exc:
            raise await self._fail(exc, "announce work") from exc

    async def listen(self, on_wake: Callable[[], None]) -> PgListener:
        """Call ``on_wake`` whenever a runner announces work in this schema.

        Raises:
            StorageError: The listening connection could not be opened.
        """
        return await open_listener(
            self._store, what="work", wakes=lambda schema: {CHANNEL: (schema, on_wake)}
        )
