"""A database written by Cloacina 0.3.1 opens in cloaca with its history intact."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import cloaca

from .conftest import Database

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def define_fixture_workflows() -> None:
    with cloaca.WorkflowBuilder("fx_chain3"):

        @cloaca.task(id="extract")
        def extract(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("extracted", [1, 2, 3])
            return ctx

        @cloaca.task(id="transform", dependencies=["extract"])
        def transform(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("transformed", [v * 10 for v in ctx.get("extracted")])
            return ctx

        @cloaca.task(id="load", dependencies=["transform"])
        def load(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("loaded", sum(ctx.get("transformed")))
            return ctx


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
            )
        ]
        return {
            t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables
        }


def fixture_copy(tmp_path: Path) -> Path:
    target = tmp_path / "taken-over.sqlite"
    shutil.copyfile(FIXTURES / "cloacina-0.3.1.sqlite", target)
    return target


def test_fixture_opens_without_rewriting_its_rows(tmp_path: Path) -> None:
    db = fixture_copy(tmp_path)
    before = snapshot(db)
    config = cloaca.DefaultRunnerConfig(enable_cron_scheduling=False)
    with cloaca.DefaultRunner.with_config("sqlite://" + str(db), config):
        pass
    assert snapshot(db) == before


def test_new_executions_run_on_the_fixture_with_its_encodings(tmp_path: Path) -> None:
    db = fixture_copy(tmp_path)
    define_fixture_workflows()
    before = snapshot(db)
    config = cloaca.DefaultRunnerConfig(enable_cron_scheduling=False)
    with cloaca.DefaultRunner.with_config("sqlite://" + str(db), config) as runner:
        result = runner.execute("fx_chain3", cloaca.Context({"fixture": "again"}))
    assert result.status == "Completed"
    assert result.final_context.get("loaded") == 60
    after = snapshot(db)
    # Every row the fixture had is still there, byte for byte.
    for table, rows in before.items():
        assert set(rows) <= set(after[table]), table
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT * FROM pipeline_executions WHERE id = ?",
            (uuid.UUID(result.execution_id).bytes,),
        ).fetchone()
        assert row["status"] == "Completed"
        assert isinstance(row["id"], bytes)
        assert len(row["id"]) == 16
        assert row["started_at"].endswith("+00:00")
        assert "T" in row["started_at"]
        tasks = conn.execute(
            "SELECT task_name, status, attempt, max_attempts, trigger_rules,"
            " task_configuration, typeof(id) AS id_type"
            " FROM task_executions WHERE pipeline_execution_id = ? ORDER BY task_name",
            (row["id"],),
        ).fetchall()
        assert [t["task_name"] for t in tasks] == [
            "public::embedded::fx_chain3::extract",
            "public::embedded::fx_chain3::load",
            "public::embedded::fx_chain3::transform",
        ]
        for t in tasks:
            assert t["status"] == "Completed"
            assert t["id_type"] == "blob"
            assert json.loads(t["trigger_rules"]) == {"type": "Always"}
            assert t["task_configuration"] == "{}"
        context = conn.execute(
            "SELECT value FROM contexts WHERE id = ?", (row["context_id"],)
        ).fetchone()
        assert json.loads(context["value"])["loaded"] == 60


def test_fixture_history_stays_readable(tmp_path: Path) -> None:
    db = fixture_copy(tmp_path)
    manifest = json.loads((FIXTURES / "cloacina-0.3.1-sqlite.json").read_text())
    config = cloaca.DefaultRunnerConfig(enable_cron_scheduling=False)
    with cloaca.DefaultRunner.with_config("sqlite://" + str(db), config):
        pass
    database = Database("sqlite", "sqlite://" + str(db), None)
    for expected in manifest["pipeline_executions"]:
        row = database.execution(expected["id"])
        assert row.status == expected["status"]
        assert row.pipeline_name == expected["pipeline_name"]
