"""``InlineSqliteStore``: the real SQLite store with its calls run on the loop's thread.

For deterministic simulation only (``tests/simulation``). aiosqlite runs every call on
a worker thread and completes it on the loop whenever the thread is done, so the order
in which concurrent tasks see their results depends on thread timing. Here the same
store code and the same SQLite file are used, but the connection is an
aiosqlite-compatible shim that runs each call synchronously on the calling thread and
then yields once to the loop (as awaiting the worker would), so a run depends only on
the program and its seed. A call blocks the loop for as long as SQLite takes, which is
why production never uses it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterable
from typing import Any

from actors._backend import checkpoint
from cloaca.storage.sqlite import SqliteStore

__all__ = ("InlineConnection", "InlineSqliteStore")


class _NoThread:
    """Stands in for aiosqlite's worker thread (the store joins it on failure)."""

    def join(self, timeout: float | None = None) -> None:
        """Nothing to wait for."""


class InlineConnection:
    """The part of ``aiosqlite.Connection`` the SQLite store uses, run inline.

    Args:
        database: What ``sqlite3.connect`` opens.
        **kwargs: Passed to ``sqlite3.connect`` (``uri``, ``isolation_level``,
            ``timeout``).
    """

    def __init__(self, database: str, **kwargs: Any) -> None:
        self._database = database
        self._kwargs = kwargs
        self._conn: sqlite3.Connection | None = None
        self._thread = _NoThread()

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._open().__await__()

    async def _open(self) -> InlineConnection:
        self._conn = sqlite3.connect(self._database, **self._kwargs)
        await checkpoint()
        return self

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        return self._db().in_transaction

    async def _execute(self, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        await checkpoint()
        return result

    async def execute(self, sql: str, parameters: Any = None) -> sqlite3.Cursor:
        """Run one statement."""
        db = self._db()
        cursor = db.execute(sql) if parameters is None else db.execute(sql, parameters)
        await checkpoint()
        return cursor

    async def execute_fetchall(self, sql: str, parameters: Any = None) -> list[Any]:
        """Run one statement and return every row."""
        db = self._db()
        cursor = db.execute(sql) if parameters is None else db.execute(sql, parameters)
        rows = cursor.fetchall()
        await checkpoint()
        return rows

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> None:
        """Run one statement per parameter set."""
        self._db().executemany(sql, parameters)
        await checkpoint()

    async def close(self) -> None:
        """Close the connection; idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class InlineSqliteStore(SqliteStore):
    """``SqliteStore`` on an `InlineConnection` (see the module)."""

    _connect = staticmethod(InlineConnection)
