"""PostgreSQL tenants: one schema and one login role per tenant (API.md 3.16, 4.16).

``create_tenant`` works in one transaction: it takes the migration advisory lock,
refuses an existing role, creates the login role (the server quotes the password
literal itself), creates the schema and Cloacina's layout inside it through the
same migration code as ``PostgresStore.open`` (``pg_migrate``), and grants the role
usage and create on its schema plus every privilege on the tables and sequences in
it, present and future. Nothing else is granted, so a tenant's role cannot read
another tenant's schema. Any failure rolls everything back and raises; unlike the
reference, errors are never swallowed.

``remove_tenant`` revokes what ``create_tenant`` granted (errors ignored, as
API.md 3.16 says), drops the schema with everything in it and drops the role. It
refuses to drop a superuser role. Names must have been validated by
``cloaca.storage.identifiers``; they reach SQL only through its quoting helper.
"""

from __future__ import annotations

import asyncpg

from cloaca.storage.errors import StorageError
from cloaca.storage.identifiers import render
from cloaca.storage.pg_errors import (
    DRIVER_ERRORS,
    translate_connect_error,
    translate_error,
)
from cloaca.storage.pg_migrate import prepare_schema
from cloaca.storage.pg_url import PostgresTarget
from cloaca.storage.queries import load_queries

__all__ = ("TenantError", "create_tenant", "remove_tenant")


class TenantError(StorageError):
    """A tenant operation was refused before the server was asked to do it."""


async def _connect(target: PostgresTarget) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            server_settings={**target.server_settings, "TimeZone": "UTC"},
            **target.connect_kwargs(),
        )
    except DRIVER_ERRORS as exc:
        raise translate_connect_error(exc, target) from exc


async def create_tenant(
    target: PostgresTarget, *, schema: str, role: str, password: str
) -> None:
    """Create a tenant's role, schema, layout and grants in one transaction.

    Args:
        target: The administrator's connection target.
        schema: A validated, folded schema name.
        role: A validated, folded role name.
        password: The role's password (never logged, never formatted by us).

    Raises:
        TenantError: The role exists already.
        StorageUnavailable: The server cannot be reached.
        SchemaMismatch: The schema exists with a partial or foreign layout.
        StorageError: The server refused a step (e.g. no CREATEROLE privilege).
    """
    q = load_queries("postgres")
    conn = await _connect(target)
    try:
        async with conn.transaction():
            await conn.execute(q["lock_migrations"])
            if await conn.fetchrow(q["role_exists"], role) is not None:
                raise TenantError(
                    f'role "{role}" already exists', url=target.display_url
                )
            statement = await conn.fetchval(q["format_create_role"], role, password)
            await conn.execute(statement)
            await conn.execute(render(q["set_local_search_path"], schema=schema))
            await prepare_schema(conn, schema, display_url=target.display_url)
            await conn.execute(render(q["grant_tenant"], schema=schema, role=role))
    except DRIVER_ERRORS as exc:
        raise translate_error(
            exc, target, action=f"create tenant schema {schema!r} with role {role!r}"
        ) from exc
    finally:
        await conn.close()


async def remove_tenant(target: PostgresTarget, *, schema: str, role: str) -> None:
    """Revoke a tenant's privileges, drop its schema and its role.

    Args:
        target: The administrator's connection target.
        schema: A validated, folded schema name (missing is fine).
        role: A validated, folded role name (missing is fine).

    Raises:
        TenantError: ``role`` is a superuser.
        StorageUnavailable: The server cannot be reached.
        StorageError: The server refused a step (e.g. the role owns objects
            elsewhere, so it cannot be dropped).
    """
    q = load_queries("postgres")
    conn = await _connect(target)
    try:
        async with conn.transaction():
            found = await conn.fetchrow(q["role_exists"], role)
            if found is not None and found["rolsuper"]:
                raise TenantError(
                    f'refusing to drop role "{role}": it is a superuser',
                    url=target.display_url,
                )
            if found is not None and await conn.fetchval(q["schema_exists"], schema):
                try:
                    async with conn.transaction():
                        await conn.execute(
                            render(q["revoke_tenant"], schema=schema, role=role)
                        )
                except asyncpg.PostgresError:
                    # API.md 3.16: revoking is best effort; dropping is what counts.
                    pass
            await conn.execute(render(q["drop_schema"], schema=schema))
            await conn.execute(render(q["drop_role"], role=role))
    except DRIVER_ERRORS as exc:
        raise translate_error(
            exc, target, action=f"remove tenant schema {schema!r} and role {role!r}"
        ) from exc
    finally:
        await conn.close()
