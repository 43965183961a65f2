"""PostgreSQL helpers for the storage tests: a fresh schema per test on ``test``.

``make_postgres_store`` and ``drop_postgres_schema`` are what the conformance
suite's postgres parameter calls (``tests/storage/conftest.py``). The rest serves
the PostgreSQL-specific tests: loading the 0.3.1 fixture dump under another schema
name, raw connections, and a normalised catalogue dump of one schema.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from cloaca.storage.postgres import PostgresStore

HOST = "127.0.0.1"
PORT = 5432
DATABASE = "test"
USER = "postgres"
URL = f"postgresql://{USER}@{HOST}:{PORT}/{DATABASE}"
# The shared folder lies next to the repository, in CI as in a session.
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
FIXTURE_DUMP = FIXTURES / "cloacina-0.3.1-postgres.sql"
FIXTURE_MANIFEST = FIXTURES / "cloacina-0.3.1-postgres.json"
FIXTURE_SCHEMA = "fixture_v031"


def new_schema_name(prefix: str = "t") -> str:
    """A schema name no other test uses (tests of several engineers share ``test``)."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


async def connect() -> asyncpg.Connection:
    """A raw admin connection to the test database, in UTC."""
    return await asyncpg.connect(
        host=HOST,
        port=PORT,
        user=USER,
        database=DATABASE,
        server_settings={"TimeZone": "UTC"},
    )


async def make_postgres_store(schema_name: str, *, pool_size: int = 2) -> PostgresStore:
    """An opened store on a fresh schema ``schema_name`` of database ``test``."""
    store = PostgresStore(URL, pool_size=pool_size, schema=schema_name)
    await store.open()
    return store


async def drop_postgres_schema(schema_name: str) -> None:
    """Drop a test schema and everything in it (missing is fine)."""
    conn = await connect()
    try:
        quoted = '"' + schema_name.lower().replace('"', '""') + '"'
        await conn.execute("DROP SCHEMA IF EXISTS " + quoted + " CASCADE")
    finally:
        await conn.close()


async def load_fixture(schema_name: str) -> None:
    """Load the 0.3.1 dump under ``schema_name`` with psql (fixtures/README.md)."""
    text = FIXTURE_DUMP.read_text(encoding="utf-8")
    renamed = re.sub(rf"\b{FIXTURE_SCHEMA}\b", schema_name, text)
    result = await anyio.run_process(
        ["psql", "-h", HOST, "-p", str(PORT), "-U", USER, "-d", DATABASE,
         "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=renamed.encode(),
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.decode()}")


_ANY_LIST = re.compile(r"^CHECK \(\(\((\w+)\)::text = ANY \(")


def _normalise_check(definition: str) -> str:
    """One spelling for ``col IN ('a', 'b')`` CHECKs.

    PostgreSQL deparses such a CHECK as ``ANY ((ARRAY['a'::varchar, ...])::text[])``
    when created from DDL, but as ``ANY (ARRAY[('a'::varchar)::text, ...])`` once
    that text has gone through pg_dump and back; both mean the same constraint.
    """
    match = _ANY_LIST.match(definition)
    if match is None:
        return definition
    values = re.findall(r"'([^']*)'", definition)
    return f"CHECK ({match.group(1)} IN {tuple(values)!r})"


async def catalogue(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """A normalised description of every object in ``schema``.

    Tables, columns (position, type, default, nullability), constraints (name,
    kind, definition), indexes (name, definition), functions (name, result,
    language, body), with the schema name replaced by ``S``.
    """
    strip = re.compile(rf"\b{re.escape(schema)}\.")

    def clean(text: str | None) -> str | None:
        return None if text is None else strip.sub("", text)

    ns = await conn.fetchval("SELECT oid FROM pg_namespace WHERE nspname = $1", schema)
    tables = await conn.fetch(
        "SELECT oid, relname, relkind FROM pg_class WHERE relnamespace = $1 "
        "AND relkind IN ('r', 'p', 'v', 'm', 'f', 'S') ORDER BY relname",
        ns,
    )
    columns = await conn.fetch(
        "SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) "
        "AS type, a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE c.relnamespace = $1 AND c.relkind = 'r' AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
        ns,
    )
    constraints = await conn.fetch(
        "SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid) AS def "
        "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
        "WHERE k.connamespace = $1 ORDER BY c.relname, k.conname",
        ns,
    )
    indexes = await conn.fetch(
        "SELECT i.relname, pg_get_indexdef(i.oid) AS def FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relnamespace = $1 "
        "ORDER BY i.relname",
        ns,
    )
    functions = await conn.fetch(
        "SELECT p.proname, pg_get_function_result(p.oid) AS result, "
        "pg_get_function_arguments(p.oid) AS args, l.lanname, p.prosrc "
        "FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
        "WHERE p.pronamespace = $1 ORDER BY p.proname",
        ns,
    )
    return {
        "tables": [(r["relname"], r["relkind"]) for r in tables],
        "columns": [
            (
                r["relname"],
                r["attnum"],
                r["attname"],
                r["type"],
                r["attnotnull"],
                r["default"],
            )
            for r in columns
        ],
        "constraints": [
            (
                r["relname"],
                r["conname"],
                r["contype"],
                _normalise_check(clean(r["def"]) or ""),
            )
            for r in constraints
        ],
        "indexes": [(r["relname"], clean(r["def"])) for r in indexes],
        "functions": [
            (r["proname"], r["result"], r["args"], r["lanname"], r["prosrc"])
            for r in functions
        ],
    }


def split_cloaca_objects(
    description: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``catalogue`` output split into Cloacina's objects and cloaca's own additions.

    cloaca's additive migrations (SCHEMA.md 9) create only objects named
    ``cloaca_*``; everything else must be exactly Cloacina's layout.
    """
    theirs: dict[str, Any] = {}
    ours: dict[str, Any] = {}
    for kind, items in description.items():
        theirs[kind] = [i for i in items if not str(i[0]).startswith("cloaca_")]
        ours[kind] = [i for i in items if str(i[0]).startswith("cloaca_")]
    return theirs, ours
