"""LISTEN connections for wake-ups between runners (PostgreSQL).

Each subscriber keeps one dedicated connection outside the pool (a pooled one
would be handed to other work between notifications). Notifications carry the
schema they concern, so runners of different tenants on one database wake only
for their own; ``open_listener`` compares payloads against what the subscriber
expects once the connection knows its schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import asyncpg

from cloaca.storage.errors import StorageError
from cloaca.storage.pg_connect import connect
from cloaca.storage.pg_errors import DRIVER_ERRORS
from cloaca.storage.postgres import PostgresStore
from cloaca.storage.queries import load_queries

__all__ = ("PgListener", "open_listener")

Wakes = Mapping[str, tuple[str, Callable[[], None]]]
"""Channel -> (the payload that concerns the subscriber, what to call then)."""


class PgListener:
    """One LISTEN connection; closing it ends every subscription on it."""

    def __init__(
        self, conn: asyncpg.Connection, callbacks: Mapping[str, object]
    ) -> None:
        self._conn: asyncpg.Connection | None = conn
        self._callbacks = dict(callbacks)

    @property
    def alive(self) -> bool:
        """False once the connection is closed or was lost."""
        return self._conn is not None and not self._conn.is_closed()

    async def aclose(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            for channel, callback in self._callbacks.items():
                await conn.remove_listener(channel, callback)
            await conn.close(timeout=2)
        except DRIVER_ERRORS:
            conn.terminate()


async def open_listener(
    store: PostgresStore, *, what: str, wakes: Callable[[str], Wakes]
) -> PgListener:
    """Open a connection of ``store`` that listens as ``wakes(schema)`` says.

    Args:
        store: The runner's store (its URL and session settings are used).
        what: What is listened for, for the error message.
        wakes: Given the connection's schema, the channels to listen on.

    Raises:
        StorageError: The listening connection could not be opened.
    """
    try:
        conn = await connect(
            server_settings=store._server_settings(),
            **store._target.connect_kwargs(),
        )
    except DRIVER_ERRORS as exc:
        raise StorageError(
            f"cannot listen for {what} on {store.display_url}: {exc}",
            url=store.display_url,
        ) from exc
    callbacks = {}
    try:
        schema = await conn.fetchval(load_queries("postgres")["current_schema"])
        for channel, (expected, wake) in wakes(schema).items():

            def callback(
                _c: object,
                _pid: int,
                _channel: str,
                payload: str,
                expected: str = expected,
                wake: Callable[[], None] = wake,
            ) -> None:
                if payload == expected:
                    wake()

            await conn.add_listener(channel, callback)
            callbacks[channel] = callback
    except BaseException:
        conn.terminate()
        raise
    return PgListener(conn, callbacks)
