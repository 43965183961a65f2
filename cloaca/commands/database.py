"""Looking at a database without changing it, and opening stores for sub-commands.

``inspect_database`` reads what a database holds (reachable, which layout, which
migrations are recorded) through a read-only SQLite connection or one plain
PostgreSQL connection, and decides with storage's own ``plan_migrations`` what
opening it would do; ``doctor`` and ``db upgrade`` report that. ``opened_store``
opens a store for the reading sub-commands, refusing a database that holds no
cloaca layout (rather than creating one where a typo pointed), and turns every
storage failure into a one-line ``CommandError``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio.to_thread

from cloaca.commands.common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
)
from cloaca.storage import open_store
from cloaca.storage.errors import SchemaMismatch, StorageError
from cloaca.storage.identifiers import InvalidIdentifier
from cloaca.storage.migrate import (
    MIGRATIONS_TABLE,
    SchemaState,
    load_migrations,
    plan_migrations,
)
from cloaca.storage.protocol import Store
from cloaca.storage.queries import load_queries
from cloaca.storage.urls import InvalidDatabaseUrl, detect_backend, mask_password

__all__ = ("Inspection", "State", "inspect_database", "opened_store")

State = Literal["absent", "ephemeral", "empty", "current", "pending", "mismatch"]
"""What a database holds: no file / schema at all; a private in-memory or
temporary database; no cloaca layout yet; the full layout; the layout with
cloaca migrations still to apply; a layout cloaca refuses to open."""


@dataclass(frozen=True, slots=True)
class Inspection:
    """What ``inspect_database`` found.

    Attributes:
        backend: ``sqlite`` or ``postgres``.
        display_url: The URL with its password masked.
        state: See ``State``.
        detail: One line explaining the state (where, what is missing).
        versions: Migration versions recorded in the database.
        pending: Migration versions opening the database would apply (all of
            them for ``empty``).
        server: The PostgreSQL server version or the SQLite library version.
    """

    backend: str
    display_url: str
    state: State
    detail: str
    versions: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    server: str = ""


def _decide(
    backend: str, display: str, where: str, state: SchemaState, server: str
) -> Inspection:
    migrations = load_migrations(backend)
    versions = tuple(sorted(state.versions))
    found = Inspection(
        backend=backend, display_url=display, state="current", detail="", server=server
    )
    try:
        plan = plan_migrations(state, migrations, display_url=display)
    except SchemaMismatch as exc:
        return dataclasses.replace(
            found, state="mismatch", detail=str(exc), versions=versions
        )
    if plan.create:
        return dataclasses.replace(
            found,
            state="empty",
            detail=f"{where} holds no cloaca tables yet",
            pending=migrations.versions,
        )
    pending = tuple(m.version for m in plan.pending)
    if pending:
        return dataclasses.replace(
            found,
            state="pending",
            detail=f"{where} needs migrations {', '.join(pending)}",
            versions=versions,
            pending=pending,
        )
    return dataclasses.replace(
        found,
        detail=f"{where} holds the current layout ({len(versions)} migrations)",
        versions=versions,
    )


def _inspect_sqlite(url: str) -> Inspection:
    from cloaca.storage.urls import parse_sqlite_url

    display = mask_password(url)
    location = parse_sqlite_url(url)
    server = f"SQLite {sqlite3.sqlite_version}"
    if location.is_memory or location.kind == "temporary":
        return Inspection(
            backend="sqlite",
            display_url=display,
            state="ephemeral",
            detail="a private in-memory or temporary database lives only inside "
            "one process; nothing else can share it",
            server=server,
        )
    if location.kind == "file":
        if not Path(location.path).exists():
            return Inspection(
                backend="sqlite",
                display_url=display,
                state="absent",
                detail=f"no database file at {location.path}",
                server=server,
            )
        location = dataclasses.replace(location, mode="ro")
    target, uri = location.connect_target()
    q = load_queries("sqlite")
    try:
        conn = sqlite3.connect(target, uri=uri, timeout=5)
        try:
            tables = frozenset(r[0] for r in conn.execute(q["list_tables"]))
            versions: frozenset[str] = frozenset()
            if MIGRATIONS_TABLE in tables:
                versions = frozenset(r[0] for r in conn.execute(q["list_versions"]))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CommandError(
            f"cannot read SQLite database {display}: {type(exc).__name__}: {exc}",
            EXIT_UNAVAILABLE,
        ) from exc
    state = SchemaState(
        has_bookkeeping=MIGRATIONS_TABLE in tables,
        versions=versions,
        tables=tables - {MIGRATIONS_TABLE},
    )
    return _decide("sqlite", display, f"file {location.path or target}", state, server)


async def _inspect_postgres(url: str, schema: str | None) -> Inspection:
    import asyncpg

    from cloaca.storage.identifiers import quote_ident, schema_name
    from cloaca.storage.pg_errors import translate_connect_error
    from cloaca.storage.pg_url import parse_postgres_url

    target = parse_postgres_url(url)
    folded = None if schema is None else schema_name(schema)
    settings = dict(target.server_settings)
    if folded is not None:
        settings["search_path"] = quote_ident(folded)
    kwargs = target.connect_kwargs()
    kwargs.setdefault("timeout", 10)
    q = load_queries("postgres")
    try:
        conn = await asyncpg.connect(server_settings=settings, **kwargs)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CommandError(
            str(translate_connect_error(exc, target)), EXIT_UNAVAILABLE
        ) from exc
    try:
        version = conn.get_server_version()
        server = f"PostgreSQL {version.major}.{version.minor}"
        nspname = folded or await conn.fetchval(q["current_schema"])
        where = f"schema {nspname!r} of {target.location}"
        if nspname is None or not await conn.fetchval(q["schema_exists"], nspname):
            return Inspection(
                backend="postgres",
                display_url=target.display_url,
                state="absent",
                detail=f"{where} does not exist",
                server=server,
            )
        tables = frozenset(r[0] for r in await conn.fetch(q["list_tables"], nspname))
        versions: frozenset[str] = frozenset()
        if MIGRATIONS_TABLE in tables:
            versions = frozenset(
                r[0] for r in await conn.fetch(q["migration_versions"])
            )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CommandError(
            f"cannot read PostgreSQL database {target.display_url}: "
            f"{type(exc).__name__}: {exc}",
            EXIT_UNAVAILABLE,
        ) from exc
    finally:
        await conn.close()
    state = SchemaState(
        has_bookkeeping=MIGRATIONS_TABLE in tables,
        versions=versions,
        tables=tables - {MIGRATIONS_TABLE},
    )
    return _decide("postgres", target.display_url, where, state, server)


async def inspect_database(url: str, schema: str | None) -> Inspection:
    """What ``url`` (and ``schema``) holds, read without writing anything.

    Raises:
        CommandError: A URL no backend accepts or a bad schema name
            (``EXIT_USAGE``); a database that cannot be reached or read
            (``EXIT_UNAVAILABLE``).
    """
    try:
        backend = detect_backend(url)
        if backend == "postgres":
            return await _inspect_postgres(url, schema)
        if schema is not None:
            raise CommandError(
                f"--schema {schema!r} needs a PostgreSQL URL; SQLite "
                f"{mask_password(url)} has no schemas",
                EXIT_USAGE,
            )
        return await anyio.to_thread.run_sync(_inspect_sqlite, url)
    except (InvalidDatabaseUrl, InvalidIdentifier) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc


def storage_failure(exc: StorageError) -> CommandError:
    """The one-line error for a storage failure (the message names the URL)."""
    return CommandError(str(exc), EXIT_UNAVAILABLE)


@asynccontextmanager
async def opened_store(
    url: str, schema: str | None, *, create: bool = False
) -> AsyncIterator[Store]:
    """An open store on ``url``; closed on exit.

    Args:
        url: The database URL.
        schema: PostgreSQL schema, or None.
        create: Create the layout when missing (``db upgrade``); otherwise a
            database without it is refused, so a mistyped path is reported
            instead of silently becoming a new empty database.

    Raises:
        CommandError: Nothing to read there (``EXIT_FAILED``), or the failures
            of ``inspect_database``, of opening the store and of any store call
            made inside the block.
    """
    if not create:
        found = await inspect_database(url, schema)
        if found.state in ("absent", "empty", "ephemeral"):
            raise CommandError(
                f"database {found.display_url} holds no cloaca data: {found.detail}",
                EXIT_FAILED,
            )
        if found.state == "mismatch":
            raise CommandError(found.detail, EXIT_UNAVAILABLE)
    try:
        store = open_store(url, pool_size=2, schema=schema)
    except InvalidIdentifier as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    except InvalidDatabaseUrl as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    except StorageError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    try:
        await store.open()
    except StorageError as exc:
        raise storage_failure(exc) from exc
    try:
        yield store
    except StorageError as exc:
        raise storage_failure(exc) from exc
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()
