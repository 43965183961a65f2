"""SQLite schema creation and take-over rules (SCHEMA.md 4) and the migration files."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from cloaca.storage.errors import MigrationFailed, SchemaMismatch
from cloaca.storage.migrate import (
    MigrationSet,
    SchemaState,
    load_migrations,
    plan_migrations,
    read_migrations,
)
from cloaca.storage.queries import load_queries, parse_queries
from cloaca.storage.sqlite import SqliteStore, split_statements
from tests.storage.conftest import SQLITE_FIXTURE, TABLES, sqlite_url

pytestmark = pytest.mark.anyio

VERSIONS = ["000", "001", "002", "003", "004", "005", "006", "007", "008"]


Objects = dict[str, tuple[str, str, str | None]]


def objects(path: Path) -> Objects:
    """Every table and index by name: (type, table, whitespace-normalised sql)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        return {
            name: (kind, table, None if sql is None else " ".join(sql.split()))
            for kind, name, table, sql in rows
        }
    finally:
        conn.close()


@pytest.fixture(scope="module")
def fixture_objects(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    """The 0.3.1 fixture's objects, read from a copy (opening writes -wal/-shm)."""
    copy = tmp_path_factory.mktemp("reference") / "cloacina-0.3.1.sqlite"
    shutil.copyfile(SQLITE_FIXTURE, copy)
    return objects(copy)


def versions(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [
            row[0]
            for row in conn.execute(
                "SELECT version FROM __diesel_schema_migrations ORDER BY version"
            )
        ]
    finally:
        conn.close()


def every_row(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in (*TABLES, "__diesel_schema_migrations")
        }
    finally:
        conn.close()


def has_wal_file(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit(path: Path, *statements: str) -> None:
    """Change a copy with plain sqlite3, folding the WAL back into the file."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def open_and_close(url: str, **kwargs: Any) -> None:
    store = SqliteStore(url, **kwargs)
    await store.open()
    await store.close()


async def test_a_fresh_database_gets_exactly_the_fixture_objects(
    tmp_path: Path, fixture_objects: Objects
) -> None:
    path = tmp_path / "fresh.db"
    await open_and_close(sqlite_url(path))
    assert objects(path) == fixture_objects
    assert len(fixture_objects) == 61  # 12 tables, 49 indexes
    assert versions(path) == VERSIONS
    conn = sqlite3.connect(path)
    try:
        run_on = [
            r[0] for r in conn.execute("SELECT run_on FROM __diesel_schema_migrations")
        ]
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    # Diesel's CURRENT_TIMESTAMP default, the one exception to SCHEMA.md 2.1.
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", v) for v in run_on)
    assert mode == "wal"


async def test_reopening_creates_nothing_and_records_nothing_new(
    tmp_path: Path,
) -> None:
    path = tmp_path / "twice.db"
    await open_and_close(sqlite_url(path))
    first = (objects(path), every_row(path))
    await open_and_close(sqlite_url(path))
    assert (objects(path), every_row(path)) == first


async def test_the_fixture_opens_without_changing_a_row(fixture_copy: Path) -> None:
    before_rows = every_row(fixture_copy)
    before_objects = objects(fixture_copy)
    await open_and_close(sqlite_url(fixture_copy))
    assert every_row(fixture_copy) == before_rows
    assert objects(fixture_copy) == before_objects


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        (
            "DELETE FROM __diesel_schema_migrations WHERE version IN ('005', '007')",
            "missing Cloacina migration versions 005, 007",
        ),
        (
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('009')",
            "does not know: 009",
        ),
        (
            "INSERT INTO __diesel_schema_migrations (version) "
            "VALUES ('20260101000000')",
            "does not know: 20260101000000",
        ),
        (
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('cloaca_9999')",
            "does not know: cloaca_9999",
        ),
        ("DROP TABLE trigger_executions", "lacks tables trigger_executions"),
        ("DROP TABLE __diesel_schema_migrations", "no __diesel_schema_migrations"),
    ],
)
async def test_a_layout_it_cannot_take_over_is_refused_and_left_untouched(
    fixture_copy: Path, statement: str, fragment: str
) -> None:
    edit(fixture_copy, statement)
    before = digest(fixture_copy)
    with pytest.raises(SchemaMismatch) as info:
        await open_and_close(sqlite_url(fixture_copy))
    assert fragment in str(info.value)
    assert str(fixture_copy) in str(info.value)
    assert digest(fixture_copy) == before
    assert not has_wal_file(fixture_copy)


async def test_a_lone_cloacina_table_without_bookkeeping_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "partial.db"
    edit(path, "CREATE TABLE contexts (id BLOB PRIMARY KEY NOT NULL)")
    before = digest(path)
    with pytest.raises(SchemaMismatch) as info:
        await open_and_close(sqlite_url(path))
    assert "(contexts)" in str(info.value)
    assert digest(path) == before


async def test_unrelated_tables_do_not_stop_creation(
    tmp_path: Path, fixture_objects: Objects
) -> None:
    path = tmp_path / "shared.db"
    edit(path, "CREATE TABLE app_users (id INTEGER PRIMARY KEY)")
    await open_and_close(sqlite_url(path))
    created = objects(path)
    assert "app_users" in created
    assert versions(path) == VERSIONS
    assert {k: v for k, v in created.items() if k != "app_users"} == fixture_objects


async def test_concurrent_openers_of_a_new_file_create_the_schema_once(
    tmp_path: Path, fixture_objects: Objects
) -> None:
    for attempt in range(4):
        path = tmp_path / f"race-{attempt}.db"
        stores = [SqliteStore(sqlite_url(path)) for _ in range(3)]
        async with anyio.create_task_group() as group:
            for store in stores:
                group.start_soon(store.open)
        for store in stores:
            assert await store.list_executions() == []
            await store.close()
        assert versions(path) == VERSIONS
        assert objects(path) == fixture_objects


def migrations_with(tmp_path: Path, files: dict[str, str]) -> MigrationSet:
    folder = tmp_path / "migrations"
    folder.mkdir()
    package = load_migrations("sqlite")
    (folder / "baseline.sql").write_text(package.baseline, encoding="utf-8")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return read_migrations(folder, backend="sqlite")


ADD_LEASES = (
    "-- A cloaca-only table keyed by an existing id (SCHEMA.md 9).\n"
    "CREATE TABLE cloaca_leases (\n"
    "    task_execution_id BLOB PRIMARY KEY NOT NULL, -- the task; holds ';'\n"
    "    owner TEXT NOT NULL DEFAULT 'a;b'\n"
    ");\n"
    "CREATE INDEX cloaca_leases_owner_idx ON cloaca_leases (owner);\n"
)


async def test_cloaca_migrations_join_a_fresh_creation(tmp_path: Path) -> None:
    migrations = migrations_with(tmp_path, {"cloaca_0001_leases.sql": ADD_LEASES})
    path = tmp_path / "fresh.db"
    await open_and_close(sqlite_url(path), migrations=migrations)
    assert versions(path) == [*VERSIONS, "cloaca_0001"]
    assert {"cloaca_leases", "cloaca_leases_owner_idx"} <= set(objects(path))


async def test_cloaca_migrations_upgrade_a_taken_over_database_in_order(
    fixture_copy: Path, tmp_path: Path
) -> None:
    migrations = migrations_with(
        tmp_path,
        {
            "cloaca_0002_owner_note.sql": (
                "ALTER TABLE cloaca_leases ADD COLUMN cloaca_note TEXT;\n"
            ),
            "cloaca_0001_leases.sql": ADD_LEASES,
        },
    )
    assert [m.version for m in migrations.additive] == ["cloaca_0001", "cloaca_0002"]
    before = every_row(fixture_copy)
    await open_and_close(sqlite_url(fixture_copy), migrations=migrations)
    after = every_row(fixture_copy)
    assert versions(fixture_copy) == [*VERSIONS, "cloaca_0001", "cloaca_0002"]
    bookkeeping = "__diesel_schema_migrations"
    assert after[bookkeeping][:9] == before[bookkeeping]
    assert {k: v for k, v in after.items() if k != bookkeeping} == {
        k: v for k, v in before.items() if k != bookkeeping
    }
    conn = sqlite3.connect(fixture_copy)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(cloaca_leases)")]
    finally:
        conn.close()
    assert columns == ["task_execution_id", "owner", "cloaca_note"]
    # Applied once: opening again changes nothing.
    again = every_row(fixture_copy)
    await open_and_close(sqlite_url(fixture_copy), migrations=migrations)
    assert every_row(fixture_copy) == again


async def test_a_failing_cloaca_migration_is_rolled_back_and_not_recorded(
    fixture_copy: Path, tmp_path: Path
) -> None:
    broken = "CREATE TABLE cloaca_half (x INTEGER);\nCREATE TABLE contexts (y);\n"
    migrations = migrations_with(tmp_path, {"cloaca_0001_broken.sql": broken})
    with pytest.raises(MigrationFailed) as info:
        await open_and_close(sqlite_url(fixture_copy), migrations=migrations)
    assert "cloaca_0001_broken.sql" in str(info.value)
    assert versions(fixture_copy) == VERSIONS
    assert "cloaca_half" not in objects(fixture_copy)


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"0001_initial.sql": "SELECT 1;"}, "neither baseline.sql nor named"),
        (
            {"cloaca_0001_a.sql": "SELECT 1;", "cloaca_0001_b.sql": "SELECT 1;"},
            "share number 0001",
        ),
    ],
)
def test_misnamed_migration_files_are_rejected(
    tmp_path: Path, files: dict[str, str], fragment: str
) -> None:
    with pytest.raises(MigrationFailed) as info:
        migrations_with(tmp_path, files)
    assert fragment in str(info.value)


def test_a_baseline_must_name_its_versions(tmp_path: Path) -> None:
    (tmp_path / "baseline.sql").write_text("CREATE TABLE t (x);\n", encoding="utf-8")
    with pytest.raises(MigrationFailed) as info:
        read_migrations(tmp_path, backend="sqlite")
    assert "cloacina-versions" in str(info.value)
    (tmp_path / "baseline.sql").unlink()
    with pytest.raises(MigrationFailed) as info:
        read_migrations(tmp_path, backend="sqlite")
    assert "no baseline.sql" in str(info.value)


def test_the_packaged_sqlite_set_stands_for_diesel_000_to_008() -> None:
    migrations = load_migrations("sqlite")
    assert list(migrations.baseline_versions) == VERSIONS
    assert migrations.tables == set(TABLES)
    assert migrations.additive == ()


def test_plan_creates_only_on_an_empty_layout() -> None:
    migrations = load_migrations("sqlite")
    empty = SchemaState(has_bookkeeping=False, versions=frozenset(), tables=frozenset())
    assert plan_migrations(empty, migrations, display_url="u").create
    full = SchemaState(
        has_bookkeeping=True,
        versions=frozenset(VERSIONS),
        tables=frozenset({*TABLES, "__diesel_schema_migrations"}),
    )
    plan = plan_migrations(full, migrations, display_url="u")
    assert (plan.create, plan.pending) == (False, ())
    bare = SchemaState(has_bookkeeping=True, versions=frozenset(), tables=frozenset())
    with pytest.raises(SchemaMismatch, match="missing Cloacina migration versions 000"):
        plan_migrations(bare, migrations, display_url="u")


def test_split_statements_respects_comments_and_literals() -> None:
    assert split_statements(ADD_LEASES, source="x.sql") == [
        ADD_LEASES.split(");\n")[0] + ");",
        "CREATE INDEX cloaca_leases_owner_idx ON cloaca_leases (owner);",
    ]
    with pytest.raises(MigrationFailed, match="incomplete statement"):
        split_statements("CREATE TABLE t (x);\nCREATE TABLE u (\n", source="x.sql")


def test_parse_queries_reads_named_blocks() -> None:
    text = (
        "-- file comment\n\n"
        "-- name: first\n-- what it does\nSELECT 1\n  FROM t\n\n"
        "-- name: second_2\nSELECT 2 -- trailing\n"
    )
    assert parse_queries(text) == {
        "first": "SELECT 1\n  FROM t",
        "second_2": "SELECT 2 -- trailing",
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("SELECT 1\n-- name: a\nSELECT 1\n", "SQL before the first"),
        ("-- name: Bad-Name\nSELECT 1\n", "invalid query name"),
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "repeated"),
        ("-- name: a\n-- only words\n", "has no statement"),
    ],
)
def test_parse_queries_rejects_malformed_files(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        parse_queries(text, source="q.sql")
    assert "q.sql:" in str(info.value)


def test_every_sqlite_query_is_used_by_the_store() -> None:
    # The store is sqlite.py and the sqlite_*.py modules it is built from.
    package = Path(__file__).parents[2] / "cloaca/storage"
    source = "".join(p.read_text() for p in sorted(package.glob("sqlite*.py")))
    dynamic = ("set_journal_mode_", "set_synchronous_")
    unused = [
        name
        for name in load_queries("sqlite")
        if f'"{name}"' not in source and not name.startswith(dynamic)
    ]
    assert unused == []
    assert 'f"set_journal_mode_{' in source
    assert 'f"set_synchronous_{' in source
