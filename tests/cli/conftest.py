"""Fixtures for the ``cloaca`` command tests.

``cli`` runs ``cloaca.cli.main(argv)`` in-process and returns its exit code with
what it printed; ``database`` is a fresh database of each backend (a SQLite file,
or a fresh schema of PostgreSQL database ``test``, dropped afterwards) with the
options that reach it. ``main`` configures structlog, so every test here puts
structlog back as it found it: the library's loggers stay quiet until an
application configures them, and other suites rely on that.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from cloaca.cli import main

FLOWS = str(Path(__file__).resolve().parent / "flows.py")
"""The workflow module the tests load with ``--workflows``."""

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Result:
    """What one ``cloaca`` invocation did."""

    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    config = structlog.get_config()
    was_configured = structlog.is_configured()
    try:
        yield
    finally:
        structlog.reset_defaults()
        if was_configured:
            structlog.configure(**config)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``cloaca <argv...>`` in-process."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@dataclass(frozen=True)
class Database:
    """A test database and the ``cloaca`` options that reach it."""

    backend: str
    url: str
    schema: str | None

    @property
    def options(self) -> list[str]:
        """``--db`` (and ``--schema``) for a sub-command."""
        extra = [] if self.schema is None else ["--schema", self.schema]
        return ["--db", self.url, *extra]


def drop_schema(schema: str) -> None:
    """Drop a PostgreSQL test schema with everything in it."""
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of each backend."""
    if request.param == "sqlite":
        yield Database("sqlite", "sqlite://" + str(tmp_path / "cli.db"), None)
        return
    schema = "cli_" + uuid.uuid4().hex[:16]
    try:
        yield Database("postgres", PG_URL, schema)
    finally:
        drop_schema(schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL in the test's folder (the file does not exist yet)."""
    return "sqlite://" + str(tmp_path / "cli.db")
