"""Fixtures for the integration suite: one suite, run on SQLite files and PostgreSQL.

``db`` is parametrised over both backends. On PostgreSQL each test gets a fresh
schema on database ``test`` (dropped afterwards), reached through ``with_schema``.
PostgreSQL tests are marked ``postgres`` and fail (never skip) when the server is
down: CI must see it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cloaca
from cloaca.storage import open_store
from cloaca.storage.protocol import ExecutionRow

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


class Database:
    """One test database: make runners on it and read its rows back."""

    def __init__(self, backend: str, url: str, schema: str | None) -> None:
        self.backend = backend
        self.url = url
        self.schema = schema

    def runner(
        self, config: cloaca.DefaultRunnerConfig | None = None
    ) -> cloaca.DefaultRunner:
        """A DefaultRunner on this database."""
        return cloaca.DefaultRunner._open(
            self.url, config or cloaca.DefaultRunnerConfig(), self.schema
        )

    def async_runner(self) -> cloaca.AsyncRunner:
        """An AsyncRunner on this database."""
        if self.schema is None:
            return cloaca.AsyncRunner(self.url)
        return cloaca.AsyncRunner.with_schema(self.url, self.schema)

    def execution(self, execution_id: str) -> ExecutionRow:
        """The stored execution with its tasks, read through a fresh store."""

        async def read() -> ExecutionRow | None:
            store = open_store(self.url, schema=self.schema)
            await store.open()
            try:
                return await store.get_execution(uuid.UUID(execution_id))
            finally:
                await store.close()

        row = asyncio.run(read())
        assert row is not None, f"execution {execution_id} is not stored"
        return row

    def tasks(self, execution_id: str) -> dict[str, Any]:
        """Stored task rows by short task id."""
        return {
            t.task_name.rsplit("::", 1)[-1]: t
            for t in self.execution(execution_id).tasks
        }


def _drop_schema(schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of each backend."""
    if request.param == "sqlite":
        yield Database("sqlite", "sqlite://" + str(tmp_path / "cloaca.db"), None)
        return
    schema = "t_" + uuid.uuid4().hex[:16]
    try:
        yield Database("postgres", PG_URL, schema)
    finally:
        _drop_schema(schema)
