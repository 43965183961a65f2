"""Storage errors: the ``StorageError`` branch of the internal error tree.

::

    StorageError(EngineError-like, Exception)
    ├── StorageUnavailable   cannot connect / open; names the URL without its password
    ├── SchemaMismatch       a partial, foreign or newer layout; nothing was changed
    ├── MigrationFailed      names the migration version
    └── Conflict             unique violation; names the constraint

Driver exceptions (sqlite3/aiosqlite, asyncpg) are translated into these at the store
boundary with ``__cause__`` kept. The public facades map them onto API.md's built-ins.
"""

from __future__ import annotations


class StorageError(Exception):
    """The database failed."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class StorageUnavailable(StorageError):
    """The database cannot be reached or opened."""


class SchemaMismatch(StorageError):
    """The database holds a layout this version cannot take over."""


class MigrationFailed(StorageError):
    """A schema migration failed; its transaction was rolled back."""


class Conflict(StorageError):
    """A write violated a unique constraint."""
