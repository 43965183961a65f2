"""Storage backends behind one protocol (internal: no stability guarantee).

``open_store(url)`` picks the backend from the URL (API.md 4.15) and imports its
driver lazily, so ``import cloaca`` never loads aiosqlite or asyncpg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloaca.storage.errors import StorageError
from cloaca.storage.urls import detect_backend, mask_password

if TYPE_CHECKING:
    from cloaca.storage.protocol import Store

__all__ = ()


def open_store(url: str, *, pool_size: int = 10, schema: str | None = None) -> Store:
    """The store for a database URL, not yet connected (``await store.open()``).

    Args:
        url: A database URL (API.md 4.15).
        pool_size: PostgreSQL connection pool size (SQLite uses one connection).
        schema: PostgreSQL schema holding the tenant's tables (API.md 4.16).

    Returns:
        A ``SqliteStore`` or a ``PostgresStore``.

    Raises:
        InvalidDatabaseUrl: The URL names no supported backend or has invalid
            SQLite options (password masked in the message).
        StorageError: ``schema`` given with a SQLite URL (SQLite has no schemas).
    """
    backend = detect_backend(url)
    if backend == "postgres":
        from cloaca.storage.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size, schema=schema)
    if schema is not None:
        masked = mask_password(url)
        raise StorageError(
            f"SQLite database {masked!r} has no schemas; schema {schema!r} needs a "
            "PostgreSQL URL",
            url=masked,
        )
    from cloaca.storage.sqlite import SqliteStore

    return SqliteStore(url)
