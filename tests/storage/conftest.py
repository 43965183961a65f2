"""Fixtures of the storage tests: the backend-parametrised ``store`` and raw row access.

``backend`` opens a fresh store per test, on a SQLite file in ``tmp_path`` or (marked
``postgres``) on a fresh schema of database ``test`` made by ``pg_support``, and
gives raw access to the rows as stored, so the conformance suite can check the
layout without going through the store under test. The 0.3.1 fixture files live in
the shared folder next to the repository (``fixtures/README.md``); tests copy them
and never open the shared file itself.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloaca.storage.protocol import Store
from cloaca.storage.sqlite import SqliteStore
from cloaca.storage.sqlite_codec import decode_timestamp

TABLES = (
    "contexts",
    "pipeline_executions",
    "task_executions",
    "task_execution_metadata",
    "recovery_events",
    "cron_schedules",
    "cron_executions",
    "trigger_schedules",
    "trigger_executions",
    "workflow_registry",
    "workflow_packages",
)
"""Every table of Cloacina 0.3.1's layout besides ``__diesel_schema_migrations``."""

ID_COLUMNS = frozenset(
    {
        "id",
        "context_id",
        "pipeline_execution_id",
        "task_execution_id",
        "schedule_id",
        "registry_id",
    }
)


def _fixtures_dir() -> Path:
    explicit = os.environ.get("CLOACA_FIXTURES")
    if explicit:
        return Path(explicit)
    # The shared folder sits beside the repository, in a session and in CI alike.
    return Path(__file__).resolve().parents[3] / "shared" / "fixtures"


FIXTURES = _fixtures_dir()
SQLITE_FIXTURE = FIXTURES / "cloacina-0.3.1.sqlite"
SQLITE_MANIFEST = FIXTURES / "cloacina-0.3.1-sqlite.json"


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite completes its futures on the asyncio loop.
    return "asyncio"


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    """A private copy of the 0.3.1 SQLite fixture (never the shared file)."""
    assert SQLITE_FIXTURE.is_file(), f"0.3.1 fixture missing at {SQLITE_FIXTURE}"
    target = tmp_path / "taken-over.sqlite"
    shutil.copyfile(SQLITE_FIXTURE, target)
    return target


@pytest.fixture
def manifest() -> dict[str, Any]:
    """The manifest of the SQLite fixture run."""
    data: dict[str, Any] = json.loads(SQLITE_MANIFEST.read_text(encoding="utf-8"))
    return data


def sqlite_url(path: Path) -> str:
    """``sqlite://`` plus an absolute path (three slashes, API.md 4.15)."""
    return "sqlite://" + str(path.resolve())


@pytest.fixture
def raw_sqlite() -> Iterator[list[sqlite3.Connection]]:
    """Closes every raw ``sqlite3`` connection a test appends to the list."""
    connections: list[sqlite3.Connection] = []
    yield connections
    for conn in connections:
        conn.close()


class Backend:
    """A store under test plus raw access to what it stored."""

    def __init__(self, name: str, store: Store, raw: Any) -> None:
        self.name = name
        self.store = store
        self._raw = raw

    async def rows(self, table: str, **where: object) -> list[dict[str, Any]]:
        """Rows as stored (driver values), filtered by column equality."""
        assert table in TABLES, table
        names = list(where)
        if self.name == "sqlite":
            values = [
                v.bytes if isinstance(v, uuid.UUID) else v for v in where.values()
            ]
            clause = " AND ".join(f"{n} = ?" for n in names) or "1"
            cursor = self._raw.execute(
                f"SELECT * FROM {table} WHERE {clause} ORDER BY rowid", values
            )
            cols = [d[0] for d in cursor.description]
            return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]
        clause = " AND ".join(f"{n} = ${i}" for i, n in enumerate(names, 1)) or "true"
        records = await self._raw.fetch(
            f"SELECT * FROM {table} WHERE {clause}", *where.values()
        )
        return [dict(r) for r in records]

    async def row(self, table: str, id: uuid.UUID) -> dict[str, Any]:
        """The one row with ``id``, as stored."""
        (found,) = await self.rows(table, id=id)
        return found

    async def count(self, table: str) -> int:
        """How many rows ``table`` holds."""
        return len(await self.rows(table))

    def uuid(self, value: Any) -> uuid.UUID | None:
        """A stored id as ``uuid.UUID`` (SQLite: 16-byte blob; PG: uuid)."""
        if value is None:
            return None
        return uuid.UUID(bytes=value) if isinstance(value, bytes) else value

    def time(self, value: Any) -> datetime | None:
        """A stored timestamp as an aware UTC datetime (SQLite text; PG naive UTC)."""
        if value is None:
            return None
        if isinstance(value, str):
            return decode_timestamp(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Backend]:
    """An opened store of each backend on an empty database, closed afterwards."""
    if request.param == "sqlite":
        path = tmp_path / "conformance.db"
        sqlite_store = SqliteStore(sqlite_url(path))
        await sqlite_store.open()
        raw = sqlite3.connect(path, isolation_level=None)
        try:
            yield Backend("sqlite", sqlite_store, raw)
        finally:
            raw.close()
            await sqlite_store.close()
        return
    # Imported here so that the SQLite half runs without asyncpg or a server.
    from tests.storage import pg_support

    schema = pg_support.new_schema_name("conf")
    pg_store = await pg_support.make_postgres_store(schema)
    conn = await pg_support.connect()
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        yield Backend("postgres", pg_store, conn)
    finally:
        await conn.close()
        await pg_store.close()
        await pg_support.drop_postgres_schema(schema)


@pytest.fixture
def store(backend: Backend) -> Store:
    """The store under test (parametrised over every backend through ``backend``)."""
    return backend.store
