"""Bad URLs and unusable databases fail at construction, naming the URL.

Nothing already stored is lost or rewritten.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

import cloaca


def test_unrecognised_url_scheme(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        cloaca.DefaultRunner("mysql://user:secret@host/db")
    message = str(info.value)
    assert "mysql://user:***@host/db" in message
    assert "secret" not in message


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        cloaca.DefaultRunner("sqlite://" + str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "x.db"
    with pytest.raises(ValueError) as info:
        cloaca.DefaultRunner("sqlite://" + str(target))
    assert str(target) in str(info.value)
    assert not target.parent.exists()


def test_corrupted_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    target = tmp_path / "corrupt.db"
    target.write_bytes(b"this is not a database" * 100)
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as info:
        cloaca.DefaultRunner("sqlite://" + str(target))
    assert str(target) in str(info.value)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before


def test_foreign_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    target = tmp_path / "foreign.db"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE contexts (id INTEGER PRIMARY KEY, other TEXT)")
        conn.execute("INSERT INTO contexts (other) VALUES ('keep me')")
    with pytest.raises(ValueError):
        cloaca.DefaultRunner("sqlite://" + str(target))
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT other FROM contexts").fetchall() == [("keep me",)]


def test_in_memory_database_is_real_and_private() -> None:
    with cloaca.WorkflowBuilder("mem"):

        @cloaca.task(id="only")
        def only(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("ok", True)
            return ctx

    for url in ("sqlite:///:memory:", ":memory:", "sqlite://:memory:", "sqlite://"):
        with cloaca.DefaultRunner(url) as runner:
            assert (
                runner.execute("mem", cloaca.Context()).final_context.get("ok") is True
            )
    assert not Path("/:memory:").exists()


def test_non_json_context_value_is_rejected_before_anything_runs(
    tmp_path: Path,
) -> None:
    import datetime

    with pytest.raises(TypeError) as info:
        cloaca.Context({"when": datetime.datetime.now()})
    assert "when" in str(info.value)


def test_locked_database_is_reported_and_left_untouched(tmp_path: Path) -> None:
    target = tmp_path / "locked.db"
    with cloaca.DefaultRunner("sqlite://" + str(target)):
        pass
    holder = sqlite3.connect(target, isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode=DELETE").fetchall()
        holder.execute("BEGIN EXCLUSIVE")
        before = hashlib.sha256(target.read_bytes()).hexdigest()
        with pytest.raises(ValueError) as info:
            cloaca.DefaultRunner(f"sqlite://{target}?_busy_timeout=50")
        assert str(target) in str(info.value)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    finally:
        holder.execute("ROLLBACK")
        holder.close()
