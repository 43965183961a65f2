"""Opening a PostgreSQL schema: create Cloacina's layout or verify it (SCHEMA.md 4).

``prepare_schema`` runs on one connection. Its first transaction takes
``pg_advisory_xact_lock`` (a cloaca constant), so any number of processes opening
the same new schema at once are serialised: the first creates the schema, runs
``baseline.sql`` (the final objects of Cloacina 0.3.1's Diesel versions 000-009),
records every version and commits; the others wait on the lock, then find the full
set and create nothing. What to do is decided by ``cloaca.storage.migrate``
(shared with SQLite): create everything, apply pending ``cloaca_NNNN`` files (each
in its own transaction with its version row, re-checked under the lock), or refuse
with ``SchemaMismatch`` leaving the database untouched.

The schema itself is checked for existence before ``CREATE SCHEMA``: PostgreSQL
demands ``CREATE`` on the database even for ``CREATE SCHEMA IF NOT EXISTS`` on an
existing schema, and a tenant's own role (API.md 4.16) has no such privilege.
Called inside an outer transaction (``DatabaseAdmin.create_tenant``), every step
becomes a savepoint of it and commits with it.
"""

from __future__ import annotations

import asyncpg

from cloaca.storage.errors import MigrationFailed, SchemaMismatch
from cloaca.storage.identifiers import render
from cloaca.storage.migrate import (
    MIGRATIONS_TABLE,
    Migration,
    SchemaState,
    load_migrations,
    plan_migrations,
)
from cloaca.storage.queries import load_queries

__all__ = ("prepare_schema",)

_BACKEND = "postgres"


async def _read_state(conn: asyncpg.Connection, nspname: str) -> SchemaState:
    q = load_queries(_BACKEND)
    tables = frozenset(r[0] for r in await conn.fetch(q["list_tables"], nspname))
    has_bookkeeping = MIGRATIONS_TABLE in tables
    versions: frozenset[str] = frozenset()
    if has_bookkeeping:
        rows = await conn.fetch(q["migration_versions"])
        versions = frozenset(r[0] for r in rows)
    return SchemaState(
        has_bookkeeping=has_bookkeeping,
        versions=versions,
        tables=tables - {MIGRATIONS_TABLE},
    )


async def _resolve_schema(conn: asyncpg.Connection, schema: str | None) -> str:
    """The schema unqualified names resolve to, creating a named one if missing."""
    q = load_queries(_BACKEND)
    if schema is not None:
        if not await conn.fetchval(q["schema_exists"], schema):
            await conn.execute(render(q["create_schema"], schema=schema))
        return schema
    current = await conn.fetchval(q["current_schema"])
    if current is None:
        raise SchemaMismatch(
            "no schema of the connection's search_path exists; cannot create tables"
        )
    return str(current)


async def _run_migration(
    conn: asyncpg.Connection, migration: Migration, display_url: str
) -> None:
    q = load_queries(_BACKEND)
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(q["record_migration"], migration.version)
    except asyncpg.PostgresError as exc:
        raise MigrationFailed(
            f"migration {migration.version} ({_BACKEND}/{migration.filename}) "
            f"failed on {display_url}: {type(exc).__name__}: {exc}",
            url=display_url,
        ) from exc


async def prepare_schema(
    conn: asyncpg.Connection, schema: str | None, *, display_url: str
) -> None:
    """Create or verify Cloacina's layout where ``conn`` resolves names.

    Args:
        conn: A connection whose search_path starts with ``schema`` (when given).
        schema: A validated, folded schema name, or None for the connection's
            current schema (normally ``public``).
        display_url: The URL with its password masked, for messages.

    Raises:
        SchemaMismatch: A partial, foreign or newer layout; nothing was changed.
        MigrationFailed: The baseline or a ``cloaca_*`` migration failed; its
            transaction was rolled back.
        asyncpg.PostgresError: Connection or permission failures, for the caller
            to translate.
    """
    q = load_queries(_BACKEND)
    migrations = load_migrations(_BACKEND)
    async with conn.transaction():
        await conn.execute(q["lock_migrations"])
        nspname = await _resolve_schema(conn, schema)
        state = await _read_state(conn, nspname)
        plan = plan_migrations(state, migrations, display_url=display_url)
        if plan.create:
            try:
                # A savepoint, so that a failure is reported as the migration's.
                async with conn.transaction():
                    await conn.execute(migrations.baseline)
                    for migration in migrations.additive:
                        await conn.execute(migration.sql)
                    await conn.executemany(
                        q["record_migration"], [(v,) for v in migrations.versions]
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationFailed(
                    f"creating Cloacina's layout in schema {nspname!r} of "
                    f"{display_url} failed: {type(exc).__name__}: {exc}",
                    url=display_url,
                ) from exc
            return
    for migration in plan.pending:
        async with conn.transaction():
            await conn.execute(q["lock_migrations"])
            # Another process may have applied it while we waited for the lock.
            current = await _read_state(conn, nspname)
            if migration.version in current.versions:
                continue
            await _run_migration(conn, migration, display_url)
