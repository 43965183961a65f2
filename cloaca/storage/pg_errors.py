"""Translation of asyncpg and socket exceptions into the ``StorageError`` branch.

No driver traceback leaves the PostgreSQL store bare: every exception is raised
again as one of ``cloaca.storage.errors`` with ``__cause__`` kept and a message
that says what was being done, where (host, port, database) and which URL, with
the password masked. The split that matters to the runtime:

* ``StorageUnavailable``: the server cannot be reached, refused the login, has no
  such database, or the connection died (``pg_terminate_backend``, a restart, a
  network cut). Retrying the batch on a fresh connection may succeed.
* ``Conflict``: a unique constraint was violated; the message names it.
* ``StorageError``: anything else the server or driver rejected (a CHECK or a
  foreign key, a bad value). Retrying will not help.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from cloaca.storage.errors import Conflict, StorageError, StorageUnavailable
from cloaca.storage.pg_url import PostgresTarget

__all__ = (
    "DRIVER_ERRORS",
    "is_connection_lost",
    "translate_connect_error",
    "translate_error",
)

DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # Not an InterfaceError: raised when a pooled connection is still mid-operation
    # (e.g. its backend was terminated while a statement ran). Never let it out raw.
    asyncpg.InternalClientError,
    OSError,
)
"""Everything the driver raises that a store must translate into a StorageError."""

_CONNECT_FAILURES: Final = (
    OSError,  # refused, unreachable, DNS (socket.gaierror), reset
    TimeoutError,  # connect_timeout
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.InvalidAuthorizationSpecificationError,  # 28000/28P01: role, password
    asyncpg.InvalidCatalogNameError,  # 3D000: no such database
    asyncpg.OperatorInterventionError,  # 57P01-03: terminated, shutting down, starting
    asyncpg.TooManyConnectionsError,  # 53300
)


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (or the server) went away.

    Args:
        exc: An exception raised while talking to the server.

    Returns:
        True for socket errors, timeouts, connection-class SQLSTATEs, operator
        intervention (``pg_terminate_backend``) and the driver's "connection is
        closed" interface errors.
    """
    if isinstance(exc, (*_CONNECT_FAILURES, asyncpg.InternalClientError)):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    detail = getattr(exc, "detail", None)
    if detail:
        text = f"{text} ({detail})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def translate_connect_error(
    exc: BaseException, target: PostgresTarget
) -> StorageUnavailable:
    """The error for a failed attempt to connect.

    Args:
        exc: What asyncpg or the socket layer raised.
        target: Where we tried to connect.

    Returns:
        ``StorageUnavailable`` naming host, port, database and the masked URL.
    """
    return StorageUnavailable(
        f"cannot connect to PostgreSQL at {target.host}:{target.port}, database "
        f"{target.database or target.user or '(default)'!r} "
        f"({target.display_url}): {_reason(exc)}",
        url=target.display_url,
    )


def translate_error(
    exc: BaseException, target: PostgresTarget, *, action: str
) -> StorageError:
    """The error for a failed operation on an open store.

    Args:
        exc: What asyncpg or the socket layer raised.
        target: The database the store uses.
        action: What was being done (``"apply a batch of 12 journal entries"``).

    Returns:
        ``StorageUnavailable`` for a lost connection, ``Conflict`` for a unique
        violation (naming the constraint), ``StorageError`` otherwise.
    """
    where = f"{target.location} ({target.display_url})"
    if is_connection_lost(exc):
        return StorageUnavailable(
            f"lost the PostgreSQL connection to {where} while trying to {action}: "
            f"{_reason(exc)}; nothing of it was committed, unless the commit "
            "itself was cut off",
            url=target.display_url,
        )
    if isinstance(exc, asyncpg.UniqueViolationError):
        constraint = getattr(exc, "constraint_name", None) or "a unique constraint"
        return Conflict(
            f"PostgreSQL {where} refused to {action}: {constraint} violated "
            f"({_reason(exc)})",
            url=target.display_url,
        )
    return StorageError(
        f"PostgreSQL {where} failed to {action}: {_reason(exc)}",
        url=target.display_url,
    )
