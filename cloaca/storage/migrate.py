"""Migration files and bookkeeping shared by both stores (SCHEMA.md section 4).

A backend's folder ``cloaca/storage/sql/<backend>/migrations/`` holds:

* ``baseline.sql``: Cloacina v0.3.1's final objects, exactly as 0.3.1 leaves them
  (its DDL copied from the fixtures), in one file. Its first line,
  ``-- cloacina-versions: 000 001 ...``, lists the Diesel versions the baseline
  stands for; creating it records every one of them in
  ``__diesel_schema_migrations`` (``version`` only). One file instead of one per
  Diesel step because 0.3.1's later steps rebuild tables (``ALTER TABLE … RENAME``),
  and only the final objects matter to Cloacina, which compares version strings.
* ``cloaca_NNNN_<what>.sql``: cloaca's own additive migrations (SCHEMA.md 9),
  recorded as version ``cloaca_NNNN`` and applied in number order, each in its own
  transaction together with its version row. None exists yet.

This module finds and parses those files and decides, from what a database holds,
what to do (``plan_migrations``): create everything, apply pending ``cloaca_*``
files, or refuse with ``SchemaMismatch``. Executing SQL and locking (SQLite
``BEGIN IMMEDIATE``, PostgreSQL advisory lock) stay in the store modules.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import LiteralString

from cloaca.storage.errors import MigrationFailed, SchemaMismatch

__all__ = (
    "BASELINE_FILE",
    "MIGRATIONS_TABLE",
    "Migration",
    "MigrationPlan",
    "MigrationSet",
    "SchemaState",
    "load_migrations",
    "plan_migrations",
    "read_migrations",
)

MIGRATIONS_TABLE: LiteralString = "__diesel_schema_migrations"
"""Diesel's bookkeeping table, shared with Cloacina (SCHEMA.md 4)."""

BASELINE_FILE = "baseline.sql"
"""The file that creates Cloacina v0.3.1's layout."""

_VERSIONS_HEADER = re.compile(r"^--\s*cloacina-versions:\s*(?P<versions>.*?)\s*$")
_CLOACA_FILE = re.compile(r"^cloaca_(?P<number>\d{4})_(?P<what>[a-z0-9_]+)\.sql$")
_CREATE_TABLE = re.compile(
    r"\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"`]?(?P<name>\w+)[\"`]?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One of cloaca's additive migration files.

    Attributes:
        version: The row recorded in ``__diesel_schema_migrations`` (``cloaca_0001``).
        filename: The file it came from, for error messages.
        sql: The statements, executed in one transaction.
    """

    version: str
    filename: str
    sql: LiteralString


@dataclass(frozen=True, slots=True)
class MigrationSet:
    """Everything one backend knows how to create.

    Attributes:
        backend: The folder name (``sqlite``, ``postgres``).
        baseline: The DDL of Cloacina v0.3.1's final layout.
        baseline_versions: The Diesel versions the baseline is recorded as.
        additive: cloaca's own migrations, in the order they apply.
        tables: The tables the baseline creates, besides the bookkeeping table.
    """

    backend: str
    baseline: LiteralString
    baseline_versions: tuple[str, ...]
    additive: tuple[Migration, ...]
    tables: frozenset[str]

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version a fully migrated database records, in order."""
        return self.baseline_versions + tuple(m.version for m in self.additive)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What an opened database holds, as read before deciding anything.

    Attributes:
        has_bookkeeping: Whether ``__diesel_schema_migrations`` exists.
        versions: Its ``version`` values (empty without the table).
        tables: Every table name in the database (or PostgreSQL schema).
    """

    has_bookkeeping: bool
    versions: frozenset[str]
    tables: frozenset[str]


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """What ``open()`` must do to a database.

    Attributes:
        create: The database is empty of this layout: run the baseline and every
            additive migration in one transaction and record all versions.
        pending: Otherwise, the additive migrations still to apply, in order,
            each in its own transaction with its version row.
    """

    create: bool
    pending: tuple[Migration, ...] = ()


def _parse_versions(text: str, filename: str) -> tuple[str, ...]:
    first = text.split("\n", 1)[0].strip()
    match = _VERSIONS_HEADER.match(first)
    versions = tuple(match.group("versions").split()) if match else ()
    if not versions:
        raise MigrationFailed(
            f"{filename} must start with '-- cloacina-versions: <v> ...' "
            "naming the Diesel versions it stands for"
        )
    if len(set(versions)) != len(versions):
        raise MigrationFailed(f"{filename} lists a Diesel version twice")
    return versions


def read_migrations(directory: Traversable, *, backend: str) -> MigrationSet:
    """Read a migrations folder.

    Args:
        directory: The folder (a package resource or a ``pathlib.Path``).
        backend: The backend name the set belongs to.

    Returns:
        The parsed set.

    Raises:
        MigrationFailed: A missing or malformed baseline, a file that follows
            neither naming rule, or two files with the same number.
    """
    baseline_text: str | None = None
    additive: dict[int, Migration] = {}
    for entry in directory.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        if name == BASELINE_FILE:
            baseline_text = text
            continue
        match = _CLOACA_FILE.match(name)
        if match is None:
            raise MigrationFailed(
                f"migration file {backend}/{name} is neither {BASELINE_FILE} nor "
                "named cloaca_NNNN_<what>.sql"
            )
        number = int(match.group("number"))
        if number in additive:
            raise MigrationFailed(
                f"migration files {additive[number].filename} and {name} share "
                f"number {number:04d}"
            )
        # Package data, never user input.
        additive[number] = Migration(
            version=f"cloaca_{number:04d}", filename=name, sql=text
        )
    if baseline_text is None:
        raise MigrationFailed(f"{backend} migrations have no {BASELINE_FILE}")
    baseline_versions = _parse_versions(baseline_text, f"{backend}/{BASELINE_FILE}")
    tables = frozenset(
        m.group("name") for m in _CREATE_TABLE.finditer(baseline_text)
    ) - {MIGRATIONS_TABLE}
    return MigrationSet(
        backend=backend,
        baseline=baseline_text,
        baseline_versions=baseline_versions,
        additive=tuple(additive[n] for n in sorted(additive)),
        tables=tables,
    )


@functools.cache
def load_migrations(backend: str) -> MigrationSet:
    """The migration set shipped in the package for ``backend``, read once.

    Args:
        backend: ``"sqlite"`` or ``"postgres"``.

    Returns:
        The parsed set from ``cloaca/storage/sql/<backend>/migrations``.
    """
    folder = resources.files("cloaca.storage").joinpath("sql", backend, "migrations")
    return read_migrations(folder, backend=backend)


def _listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def plan_migrations(
    state: SchemaState, migrations: MigrationSet, *, display_url: str
) -> MigrationPlan:
    """Decide what opening a database means (SCHEMA.md 4).

    Args:
        state: What the database holds.
        migrations: What this cloaca knows.
        display_url: The database URL with its password masked, for messages.

    Returns:
        ``create`` for a database holding neither the bookkeeping table nor any
        table of the layout; otherwise the pending additive migrations (usually
        none) of a database that records the full set of Cloacina versions.

    Raises:
        SchemaMismatch: Anything else: layout tables without bookkeeping, versions
            this cloaca does not know (a newer Cloacina or cloaca), a partial set
            of Cloacina versions, or a complete record with tables missing. The
            database must then be left exactly as it was.
    """
    layout_present = state.tables & migrations.tables
    if not state.has_bookkeeping:
        if not layout_present:
            return MigrationPlan(create=True)
        raise SchemaMismatch(
            f"database {display_url} holds tables of Cloacina's layout "
            f"({_listing(layout_present)}) but no {MIGRATIONS_TABLE} table; "
            "refusing to take it over",
            url=display_url,
        )
    unknown = state.versions - set(migrations.versions)
    if unknown:
        raise SchemaMismatch(
            f"database {display_url} records migration versions this cloaca does "
            f"not know: {_listing(unknown)} (written by a newer Cloacina or "
            "cloaca?); refusing to open it",
            url=display_url,
        )
    missing = [v for v in migrations.baseline_versions if v not in state.versions]
    if missing:
        raise SchemaMismatch(
            f"database {display_url} is missing Cloacina migration versions "
            f"{', '.join(missing)} in {MIGRATIONS_TABLE} (a partial or older "
            "layout); refusing to open it",
            url=display_url,
        )
    missing_tables = migrations.tables - state.tables
    if missing_tables:
        raise SchemaMismatch(
            f"database {display_url} records every Cloacina migration but lacks "
            f"tables {_listing(missing_tables)}; refusing to open it",
            url=display_url,
        )
    pending = tuple(m for m in migrations.additive if m.version not in state.versions)
    return MigrationPlan(create=False, pending=pending)
