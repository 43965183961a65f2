"""``cloaca tenant``, ``cloaca db upgrade`` and ``cloaca doctor``: the database side.

``tenant create|list|remove`` provision PostgreSQL tenants through
``DatabaseAdmin`` (API.md 3.16); ``list`` reads the catalog for schemas holding
cloaca's layout and the roles that may write there. ``db upgrade`` opens a store,
which creates or migrates the layout (SCHEMA.md 4), and says what it did.
``doctor`` checks the URL, connectivity, the layout and its migrations, and the
work waiting in the database, without writing anything, and ends with a verdict:
exit 0 when nothing is wrong, 1 otherwise.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any, LiteralString

from cloaca.admin import DatabaseAdmin, TenantConfig
from cloaca.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    add_database_options,
    add_json_option,
    database_url,
    print_json,
    run_async,
)
from cloaca.commands.database import Inspection, inspect_database, opened_store
from cloaca.commands.render import table
from cloaca.errors import DatabaseRuntimeError
from cloaca.storage.urls import mask_password

__all__ = ("TENANTS_QUERY", "add_parsers")

TENANTS_QUERY: LiteralString = """
SELECT n.nspname AS schema,
       COALESCE(
           (SELECT string_agg(r.rolname, ',' ORDER BY r.rolname)
              FROM pg_catalog.pg_roles AS r
             WHERE NOT r.rolsuper
               AND r.rolname NOT LIKE 'pg\\_%'
               AND has_schema_privilege(r.oid, n.oid, 'CREATE')),
           '') AS roles
  FROM pg_catalog.pg_namespace AS n
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c
                WHERE c.relnamespace = n.oid AND c.relkind = 'r'
                  AND c.relname = 'pipeline_executions')
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c
                WHERE c.relnamespace = n.oid AND c.relkind = 'r'
                  AND c.relname = '__diesel_schema_migrations')
 ORDER BY n.nspname
"""
"""Schemas holding cloaca's layout, with the non-superuser roles that may
create objects in them (a tenant's role, API.md 3.16)."""


def add_parsers(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register ``tenant``, ``db`` and ``doctor``."""
    tenant = subparsers.add_parser(
        "tenant",
        help="PostgreSQL tenants: a schema and a role each",
        description="Create, list and remove PostgreSQL tenants (one schema and "
        "one login role limited to it each).",
    )
    tenants = tenant.add_subparsers(dest="tenant_command", metavar="COMMAND")
    tenants.required = True
    create = tenants.add_parser(
        "create",
        parents=[parent],
        help="create a tenant's schema, role and tables",
        description="Create a schema, a login role limited to it, and cloaca's "
        "tables inside it, in one transaction; print the credentials.",
    )
    create.add_argument("schema_name", metavar="SCHEMA")
    create.add_argument("username", metavar="USERNAME")
    secret = create.add_mutually_exclusive_group()
    secret.add_argument(
        "--password", help="the role's password (default: a generated one)"
    )
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (keeps it out of the process list)",
    )
    _admin_options(create)
    create.set_defaults(func=tenant_create)
    listing = tenants.add_parser(
        "list",
        parents=[parent],
        help="schemas holding cloaca's tables",
        description="List the schemas that hold cloaca's tables and the roles "
        "that may write to them.",
    )
    _admin_options(listing)
    listing.set_defaults(func=tenant_list)
    remove = tenants.add_parser(
        "remove",
        parents=[parent],
        help="drop a tenant's schema (with its data) and role",
        description="Drop a tenant's schema with everything in it, and its role.",
    )
    remove.add_argument("schema_name", metavar="SCHEMA")
    remove.add_argument("username", metavar="USERNAME")
    remove.add_argument(
        "--yes", action="store_true", help="confirm that the data is to be dropped"
    )
    _admin_options(remove)
    remove.set_defaults(func=tenant_remove)

    db = subparsers.add_parser(
        "db", help="database schema", description="Manage cloaca's tables."
    )
    dbs = db.add_subparsers(dest="db_command", metavar="COMMAND")
    dbs.required = True
    upgrade = dbs.add_parser(
        "upgrade",
        parents=[parent],
        help="create or migrate cloaca's tables",
        description="Create cloaca's tables, or apply pending migrations.",
    )
    add_database_options(upgrade)
    add_json_option(upgrade)
    upgrade.set_defaults(func=db_upgrade)

    doctor = subparsers.add_parser(
        "doctor",
        parents=[parent],
        help="check the database and give a verdict",
        description="Check connectivity, the schema version and pending "
        "migrations, without changing anything; exit 1 if something is wrong.",
    )
    add_database_options(doctor)
    add_json_option(doctor)
    doctor.set_defaults(func=doctor_command)


def _admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="administrator's PostgreSQL URL (default: $CLOACA_DATABASE_URL)",
    )
    add_json_option(parser)


def _admin(url: str) -> DatabaseAdmin:
    try:
        return DatabaseAdmin(url)
    except DatabaseRuntimeError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc


def tenant_create(args: argparse.Namespace) -> int:
    """``cloaca tenant create SCHEMA USERNAME``."""
    admin = _admin(database_url(args))
    password = args.password
    if args.password_stdin:
        if sys.stdin.isatty():
            password = getpass.getpass("password: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    try:
        credentials = admin.create_tenant(
            TenantConfig(args.schema_name, args.username, password)
        )
    except DatabaseRuntimeError as exc:
        raise CommandError(str(exc), EXIT_FAILED) from exc
    data = {
        "schema": credentials.schema_name,
        "username": credentials.username,
        "password": credentials.password,
        "connection_string": credentials.connection_string,
    }
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            print(f"{key + ':':<19}{value}")
    return EXIT_OK


async def _tenants(url: str) -> list[tuple[str, str]]:
    import asyncpg

    from cloaca.storage.pg_errors import translate_connect_error
    from cloaca.storage.pg_url import parse_postgres_url

    target = parse_postgres_url(url)
    kwargs = target.connect_kwargs()
    kwargs.setdefault("timeout", 10)
    try:
        conn = await asyncpg.connect(**kwargs)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CommandError(
            str(translate_connect_error(exc, target)), EXIT_UNAVAILABLE
        ) from exc
    try:
        rows = await conn.fetch(TENANTS_QUERY)
    finally:
        await conn.close()
    return [(r["schema"], r["roles"]) for r in rows]


def tenant_list(args: argparse.Namespace) -> int:
    """``cloaca tenant list``."""
    url = database_url(args)
    _admin(url)  # the same URL checks as create and remove
    rows = run_async(_tenants, url)
    if args.json:
        print_json(
            [
                {"schema": s, "roles": [r for r in roles.split(",") if r]}
                for s, roles in rows
            ]
        )
        return EXIT_OK
    if not rows:
        print(f"no schema of {mask_password(url)} holds cloaca's tables")
        return EXIT_OK
    print("\n".join(table(["SCHEMA", "ROLES"], [[s, r or "-"] for s, r in rows])))
    return EXIT_OK


def tenant_remove(args: argparse.Namespace) -> int:
    """``cloaca tenant remove SCHEMA USERNAME --yes``."""
    admin = _admin(database_url(args))
    if not args.yes:
        raise CommandError(
            f"refusing to drop schema {args.schema_name!r} with all its data and "
            f"role {args.username!r} without --yes",
            EXIT_USAGE,
        )
    try:
        admin.remove_tenant(args.schema_name, args.username)
    except DatabaseRuntimeError as exc:
        raise CommandError(str(exc), EXIT_FAILED) from exc
    if args.json:
        print_json(
            {"schema": args.schema_name, "username": args.username, "removed": True}
        )
    else:
        print(f"removed schema {args.schema_name} and role {args.username}")
    return EXIT_OK


async def _upgrade(url: str, schema: str | None) -> tuple[Inspection, Inspection]:
    before = await inspect_database(url, schema)
    if before.state == "mismatch":
        raise CommandError(before.detail, EXIT_UNAVAILABLE)
    async with opened_store(url, schema, create=True):
        pass
    after = await inspect_database(url, schema)
    return before, after


def db_upgrade(args: argparse.Namespace) -> int:
    """``cloaca db upgrade``."""
    url = database_url(args)
    before, after = run_async(_upgrade, url, args.schema)
    if before.state in ("absent", "empty"):
        applied = after.versions
        summary = f"created cloaca's tables in {after.display_url}"
    else:
        applied = tuple(v for v in after.versions if v not in before.versions)
        summary = (
            f"applied {len(applied)} migration(s) to {after.display_url}"
            if applied
            else f"{after.display_url} is up to date"
        )
    if args.json:
        print_json(
            {
                "database": after.display_url,
                "state": after.state,
                "applied": list(applied),
                "versions": list(after.versions),
            }
        )
    else:
        print(summary)
    return EXIT_OK


async def _doctor(url: str, schema: str | None) -> list[dict[str, str]]:
    checks: list[dict[str, str]] = []

    def check(name: str, status: str, detail: str) -> None:
        checks.append({"check": name, "status": status, "detail": detail})

    try:
        found = await inspect_database(url, schema)
    except CommandError as exc:
        name = "url" if exc.exit_code == EXIT_USAGE else "connectivity"
        check(name, "fail", str(exc))
        return checks
    check("url", "ok", f"{found.backend} database {found.display_url}")
    if found.state == "ephemeral":
        check("connectivity", "warn", found.detail)
        return checks
    if found.state == "absent":
        check(
            "connectivity",
            "warn",
            f"{found.detail}; 'cloaca db upgrade' or 'cloaca run' creates it",
        )
        return checks
    check("connectivity", "ok", f"connected ({found.server})")
    if found.state == "mismatch":
        check("schema", "fail", found.detail)
        return checks
    if found.state == "empty":
        check(
            "schema",
            "warn",
            f"{found.detail}; 'cloaca db upgrade' or 'cloaca run' creates them",
        )
        return checks
    check("schema", "ok", found.detail)
    if found.state == "pending":
        check("migrations", "warn", f"{found.detail}; run 'cloaca db upgrade'")
        return checks
    check("migrations", "ok", "no pending migrations")
    async with opened_store(url, schema) as store:
        pending = len(await store.list_executions(status="Pending", limit=1000))
        running = len(await store.list_executions(status="Running", limit=1000))
    check(
        "executions",
        "ok",
        f"{pending} pending (waiting for a runtime), {running} running",
    )
    return checks


def doctor_command(args: argparse.Namespace) -> int:
    """``cloaca doctor``."""
    url = database_url(args)
    checks = run_async(_doctor, url, args.schema)
    failed = any(c["status"] == "fail" for c in checks)
    warned = any(c["status"] == "warn" for c in checks)
    verdict = "problems found" if failed else "ok, with warnings" if warned else "ok"
    if args.json:
        print_json({"verdict": verdict, "healthy": not failed, "checks": checks})
    else:
        for c in checks:
            print(f"[{c['status']:>4}] {c['check']:<12} {c['detail']}")
        print(f"verdict: {verdict}")
    return EXIT_FAILED if failed else EXIT_OK
