"""Database URL handling: API.md 4.15's backend table and SQLite locations."""

from __future__ import annotations

import pytest

from cloaca.storage import open_store
from cloaca.storage.errors import StorageError
from cloaca.storage.sqlite import SqliteStore
from cloaca.storage.urls import (
    InvalidDatabaseUrl,
    SqliteLocation,
    detect_backend,
    mask_password,
    parse_sqlite_url,
)


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("postgres://u:p@localhost/db", "postgres"),
        ("postgresql://localhost:5432/cloacina", "postgres"),
        ("sqlite:///tmp/run.db", "sqlite"),
        ("sqlite://", "sqlite"),
        ("file:data.db?mode=ro", "sqlite"),
        ("/abs/x.db", "sqlite"),
        ("./x.db", "sqlite"),
        ("../x", "sqlite"),
        (":memory:", "sqlite"),
        ("x.db", "sqlite"),
        ("x.sqlite", "sqlite"),
        ("x.sqlite3", "sqlite"),
    ],
)
def test_detect_backend_follows_the_table(url: str, backend: str) -> None:
    assert detect_backend(url) == backend


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "x.txt", "", "memory", "sqlite:/x", "http://x"],
)
def test_unrecognised_url_raises_invalid_database_url(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as info:
        detect_backend(url)
    assert isinstance(info.value, StorageError)
    assert repr(url) in str(info.value)


def test_invalid_url_message_masks_the_password() -> None:
    with pytest.raises(InvalidDatabaseUrl) as info:
        detect_backend("mysql://admin:hunter2@db.example/app")
    assert "hunter2" not in str(info.value)
    assert "mysql://admin:***@db.example/app" in str(info.value)
    assert info.value.url == "mysql://admin:***@db.example/app"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgres://user:secret@host:5432/db", "postgres://user:***@host:5432/db"),
        ("postgresql://user:p@ss@host/db", "postgresql://user:***@host/db"),
        ("postgres://:pw@host/db", "postgres://:***@host/db"),
        ("postgres://user@host:5432/db", "postgres://user@host:5432/db"),
        ("postgres://host:5432/db", "postgres://host:5432/db"),
        ("postgres://u@h/db?password=x&sslmode=off", "postgres://u@h/db?password=***&sslmode=off"),
        ("sqlite:///tmp/a.db", "sqlite:///tmp/a.db"),
    ],
)  # fmt: skip
def test_mask_password(url: str, masked: str) -> None:
    assert mask_password(url) == masked


@pytest.mark.parametrize(
    ("url", "kind", "path"),
    [
        ("sqlite:///tmp/run.db", "file", "/tmp/run.db"),
        ("sqlite://data/run.db", "file", "data/run.db"),
        ("sqlite:///app.db", "file", "/app.db"),
        ("sqlite:////var/lib/x.db", "file", "//var/lib/x.db"),
        ("sqlite://:memory:", "memory", ""),
        (":memory:", "memory", ""),
        ("sqlite:///:memory:", "memory", ""),
        ("sqlite://", "temporary", ""),
        ("/abs/x.db", "file", "/abs/x.db"),
        ("./x.db", "file", "./x.db"),
        ("x.sqlite3", "file", "x.sqlite3"),
        ("file:data.db?mode=ro", "uri", "file:data.db?mode=ro"),
    ],
)
def test_sqlite_locations_follow_the_table(url: str, kind: str, path: str) -> None:
    location = parse_sqlite_url(url)
    assert (location.kind, location.path) == (kind, path)


def test_query_options_are_parsed_and_removed_from_the_path() -> None:
    url = (
        "sqlite:///tmp/run.db?mode=rwc&_journal_mode=WAL&_synchronous=NORMAL"
        "&_busy_timeout=5000"
    )
    assert parse_sqlite_url(url) == SqliteLocation(
        kind="file",
        path="/tmp/run.db",
        mode="rwc",
        journal_mode="WAL",
        synchronous="NORMAL",
        busy_timeout_ms=5000,
    )


def test_unknown_options_are_ignored_and_values_case_folded() -> None:
    location = parse_sqlite_url(
        "sqlite://x.db?cache=shared&_journal_mode=delete&_synchronous=full&foo"
    )
    assert location == SqliteLocation(
        kind="file", path="x.db", journal_mode="DELETE", synchronous="FULL"
    )


def test_mode_memory_makes_an_in_memory_database() -> None:
    location = parse_sqlite_url("sqlite://shared.db?mode=memory")
    assert location.kind == "memory"
    assert location.is_memory


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("sqlite://x.db?mode=rwx", "mode must be rwc, rw, ro or memory"),
        ("sqlite://x.db?_journal_mode=fast", "_journal_mode must be one of"),
        ("sqlite://x.db?_synchronous=2x", "_synchronous must be one of"),
        ("sqlite://x.db?_busy_timeout=-5", "_busy_timeout must be milliseconds"),
        ("sqlite://x.db?_busy_timeout=1.5", "_busy_timeout must be milliseconds"),
    ],
)
def test_invalid_option_values_are_refused(url: str, fragment: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as info:
        parse_sqlite_url(url)
    assert fragment in str(info.value)
    assert url in str(info.value)


def test_connect_target_keeps_special_characters_in_the_file_name() -> None:
    location = SqliteLocation(kind="file", path="/tmp/a b#c%d.db", mode="ro")
    assert location.connect_target() == ("file:///tmp/a%20b%23c%25d.db?mode=ro", True)
    relative = SqliteLocation(kind="file", path="data/run.db")
    assert relative.connect_target() == ("file:data/run.db?mode=rwc", True)
    assert SqliteLocation(kind="memory", path="").connect_target() == (
        ":memory:",
        False,
    )
    assert SqliteLocation(kind="temporary", path="").connect_target() == ("", False)


def test_file_uri_mode_is_read_from_the_uri() -> None:
    assert parse_sqlite_url("file:x.db?mode=ro").is_read_only
    assert parse_sqlite_url("file::memory:").is_memory
    assert not parse_sqlite_url("file:x.db").is_memory


def test_open_store_picks_sqlite_for_sqlite_urls() -> None:
    store = open_store("sqlite:///tmp/never-opened.db")
    assert isinstance(store, SqliteStore)
    assert store.display_url == "sqlite:///tmp/never-opened.db"


def test_open_store_refuses_a_schema_with_sqlite() -> None:
    with pytest.raises(StorageError) as info:
        open_store("sqlite:///tmp/never-opened.db", schema="tenant_a")
    assert "tenant_a" in str(info.value)
    assert "PostgreSQL" in str(info.value)


def test_open_store_picks_postgres_lazily_without_connecting() -> None:
    store = open_store("postgresql://user:secret@127.0.0.1:1/none", pool_size=3)
    assert type(store).__name__ == "PostgresStore"
    assert "secret" not in store.display_url


def test_open_store_rejects_unknown_urls() -> None:
    with pytest.raises(InvalidDatabaseUrl):
        open_store("mongodb://u:p@h/db")
