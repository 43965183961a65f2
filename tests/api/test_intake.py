"""Executions submitted through the database are claimed and run by a runtime."""

from __future__ import annotations

import asyncio
import json
import uuid

import cloaca
from cloaca.runtime.intake import submit_to_database

from .conftest import Database


def define() -> None:
    with cloaca.WorkflowBuilder("submitted"):

        @cloaca.task(id="first")
        def first(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("first", ctx.get("n"))
            return ctx

        @cloaca.task(id="second", dependencies=["first"])
        def second(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("second", ctx.get("first") + 1)
            return ctx


def test_pending_execution_is_claimed_by_a_running_runner(db: Database) -> None:
    define()
    with db.runner() as runner:
        execution_id = asyncio.run(
            submit_to_database(
                db.url, "submitted", json.dumps({"n": 41}), schema=db.schema
            )
        )
        runner._wait_for(str(execution_id))
    row = db.execution(str(execution_id))
    assert row.status == "Completed"
    assert row.context_json is not None
    assert json.loads(row.context_json) == {"n": 41, "first": 41, "second": 42}
    tasks = db.tasks(str(execution_id))
    assert {k: t.status for k, t in tasks.items()} == {
        "first": "Completed",
        "second": "Completed",
    }


def test_pending_execution_waits_for_a_runner(db: Database) -> None:
    define()
    execution_id = asyncio.run(
        submit_to_database(db.url, "submitted", '{"n": 0}', schema=db.schema)
    )
    row = db.execution(str(execution_id))
    assert row.status == "Pending"
    assert {t.status for t in row.tasks} == {"NotStarted"}
    with db.runner() as runner:
        runner._wait_for(str(execution_id))
    assert db.execution(str(execution_id)).status == "Completed"


def test_own_executions_are_never_left_pending(db: Database) -> None:
    define()
    with db.runner() as runner:
        result = runner.execute("submitted", cloaca.Context({"n": 1}))
    assert db.execution(result.execution_id).status == "Completed"
    assert uuid.UUID(result.execution_id).version == 4
