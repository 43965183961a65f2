"""Opening SQLite databases: locations, private databases, pragmas, and failures."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloaca.storage import journal as j
from cloaca.storage.errors import StorageError, StorageUnavailable
from cloaca.storage.sqlite import SqliteStore
from tests.storage.conftest import sqlite_url

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 3, 20, 26, 32, tzinfo=UTC)


def one_execution() -> j.ExecutionCreated:
    return j.ExecutionCreated(
        execution_id=uuid.uuid4(),
        pipeline_name="fx_chain3",
        pipeline_version="fp",
        context_id=None,
        context_json=None,
        tasks=(),
        at=NOW,
    )


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(path.name + "-*"))


def journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        return str(mode)
    finally:
        conn.close()


async def pragma(store: SqliteStore, name: str) -> object:
    # White-box: connection-level settings are visible only on the store's own
    # connection.
    conn = store._conn
    assert conn is not None
    rows = list(await conn.execute_fetchall(f"PRAGMA {name}"))
    return rows[0][0]


async def test_a_random_bytes_file_is_unavailable_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "random.db"
    path.write_bytes(random.Random(7).randbytes(8192))
    before = digest(path)
    with pytest.raises(StorageUnavailable) as info:
        await SqliteStore(sqlite_url(path)).open()
    message = str(info.value)
    assert str(path) in message
    assert "not a SQLite database or is corrupted" in message
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert digest(path) == before
    assert sidecars(path) == []


async def test_a_database_locked_past_the_busy_timeout_is_unavailable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("CREATE TABLE app (x)")
        holder.execute("BEGIN EXCLUSIVE")
        before = digest(path)
        with pytest.raises(StorageUnavailable) as info:
            await SqliteStore(sqlite_url(path) + "?_busy_timeout=20").open()
        message = str(info.value)
        assert str(path) in message
        assert "locked by another connection past the busy timeout of 20 ms" in message
        assert digest(path) == before
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Once released, the same file opens and gets the layout.
    store = SqliteStore(sqlite_url(path))
    await store.open()
    await store.close()


async def test_a_missing_directory_is_unavailable_and_not_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(StorageUnavailable) as info:
        await SqliteStore(sqlite_url(path)).open()
    assert str(path) in str(info.value)
    assert "cannot open the file" in str(info.value)
    assert not (tmp_path / "no").exists()


async def test_a_location_that_cannot_be_written_is_unavailable() -> None:
    # /proc refuses new files even to root, unlike a chmod-ed directory.
    with pytest.raises(StorageUnavailable) as info:
        await SqliteStore("sqlite:///proc/cloaca-test.db").open()
    assert "/proc/cloaca-test.db" in str(info.value)


async def test_read_only_mode_needs_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(StorageUnavailable) as info:
        await SqliteStore(sqlite_url(path) + "?mode=ro").open()
    assert str(path) in str(info.value)
    assert not path.exists()


async def test_read_only_mode_refuses_to_create_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(StorageUnavailable) as info:
        await SqliteStore(sqlite_url(path) + "?mode=ro").open()
    assert "read-only (mode=ro) but needs its schema created" in str(info.value)
    assert path.read_bytes() == b""


async def test_read_only_mode_reads_the_fixture_and_refuses_writes(
    fixture_copy: Path,
) -> None:
    store = SqliteStore(sqlite_url(fixture_copy) + "?mode=ro")
    await store.open()
    try:
        assert len(await store.list_executions()) == 7
        with pytest.raises(StorageUnavailable) as info:
            await store.apply([one_execution()])
        assert "read-only" in str(info.value)
    finally:
        await store.close()


async def test_mode_rw_opens_an_existing_file_only(tmp_path: Path) -> None:
    path = tmp_path / "rw.db"
    with pytest.raises(StorageUnavailable):
        await SqliteStore(sqlite_url(path) + "?mode=rw").open()
    assert not path.exists()
    path.write_bytes(b"")
    store = SqliteStore(sqlite_url(path) + "?mode=rw")
    await store.open()
    await store.close()
    assert journal_mode(path) == "wal"


@pytest.mark.parametrize(
    "url", [":memory:", "sqlite://:memory:", "sqlite:///:memory:", "sqlite://"]
)
async def test_memory_and_temporary_databases_are_real_and_private(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = SqliteStore(url), SqliteStore(url)
    await first.open()
    await second.open()
    try:
        created = one_execution()
        await first.apply([created])
        assert [r.id for r in await first.list_executions()] == [created.execution_id]
        assert await second.list_executions() == []
    finally:
        await first.close()
        await second.close()
    assert names_in(tmp_path) == []
    assert ":memory:" not in names_in(Path("/"))
    reopened = SqliteStore(url)
    await reopened.open()
    try:
        assert await reopened.list_executions() == []
    finally:
        await reopened.close()


async def test_a_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    store = SqliteStore("sqlite://data/run.db")
    await store.open()
    await store.close()
    assert journal_mode(tmp_path / "data" / "run.db") == "wal"


async def test_query_options_are_not_part_of_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    url = sqlite_url(path) + "?mode=rwc&_journal_mode=WAL&_synchronous=NORMAL"
    store = SqliteStore(url + "&_busy_timeout=5000")
    await store.open()
    await store.close()
    assert names_in(tmp_path) == ["run.db"]


async def test_four_slashes_and_bare_paths_open_that_file(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    for url in ("sqlite:///" + str(path), str(path)):
        store = SqliteStore(url)
        await store.open()
        await store.apply([one_execution()])
        await store.close()
    check = SqliteStore(sqlite_url(path))
    await check.open()
    try:
        assert len(await check.list_executions()) == 2
    finally:
        await check.close()


async def test_defaults_are_wal_normal_and_a_30_second_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "defaults.db"
    store = SqliteStore(sqlite_url(path))
    await store.open()
    try:
        assert await pragma(store, "busy_timeout") == 30000
        assert await pragma(store, "synchronous") == 1  # NORMAL
        assert await pragma(store, "journal_mode") == "wal"
    finally:
        await store.close()
    # Persistent: the file stays WAL after the store is gone.
    assert journal_mode(path) == "wal"


async def test_url_options_set_the_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "options.db"
    url = (
        sqlite_url(path) + "?_journal_mode=delete&_synchronous=FULL&_busy_timeout=1234"
    )
    store = SqliteStore(url)
    await store.open()
    try:
        assert await pragma(store, "busy_timeout") == 1234
        assert await pragma(store, "synchronous") == 2  # FULL
    finally:
        await store.close()
    assert journal_mode(path) == "delete"


async def test_the_fixture_stays_in_wal_mode(fixture_copy: Path) -> None:
    store = SqliteStore(sqlite_url(fixture_copy))
    await store.open()
    await store.apply([one_execution()])
    await store.close()
    assert journal_mode(fixture_copy) == "wal"


async def test_open_and_close_are_idempotent(tmp_path: Path) -> None:
    store = SqliteStore(sqlite_url(tmp_path / "idem.db"))
    await store.open()
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(StorageError, match="is not open"):
        await store.list_executions()


async def test_a_store_that_never_opened_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "never.db"
    store = SqliteStore(sqlite_url(path))
    with pytest.raises(StorageError) as info:
        await store.apply([one_execution()])
    assert str(path) in str(info.value)
    assert not path.exists()
