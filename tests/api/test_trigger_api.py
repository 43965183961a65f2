"""The 4 trigger methods through DefaultRunner (API.md 3.9.5, 4.13), both backends."""

from __future__ import annotations

import threading

import pytest

import cloaca

from .conftest import Database

SCHEDULE_KEYS = {
    "id",
    "trigger_name",
    "workflow_name",
    "poll_interval_ms",
    "allow_concurrent",
    "enabled",
    "last_poll_at",
    "created_at",
    "updated_at",
}
FIRE_KEYS = {
    "id",
    "trigger_name",
    "context_hash",
    "pipeline_execution_id",
    "started_at",
    "completed_at",
    "created_at",
}


def test_triggers_appear_and_fire_through_the_runner(db: Database) -> None:
    fired = threading.Event()
    with cloaca.WorkflowBuilder("on_signal"):

        @cloaca.task(id="react")
        def react(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("reacted", ctx.get("trigger_name"))
            return ctx

    @cloaca.trigger("on_signal", name="signal", poll_interval="100ms")
    def signal() -> cloaca.TriggerResult:
        if fired.is_set():
            return cloaca.TriggerResult.skip()
        fired.set()
        return cloaca.TriggerResult.fire(cloaca.Context({"level": 3}))

    with db.runner() as runner:
        schedule = runner.get_trigger_schedule("signal")
        assert schedule is not None
        assert set(schedule) == SCHEDULE_KEYS
        assert schedule["workflow_name"] == "on_signal"
        assert schedule["poll_interval_ms"] == 100
        assert schedule["allow_concurrent"] is False
        assert schedule["enabled"] is True
        listed = runner.list_trigger_schedules(None, None, None)
        assert [s["id"] for s in listed] == [schedule["id"]]
        schedules = runner._runtime.schedules
        assert schedules is not None
        stats = schedules.trigger_stats
        runner._call(stats.wait_for, lambda: stats.ended >= 1)
        (fire,) = runner.get_trigger_execution_history("signal", None, None)
        assert set(fire) == FIRE_KEYS
        assert fire["completed_at"] is not None
        assert len(fire["context_hash"]) == 16
        execution_id = fire["pipeline_execution_id"]
        assert isinstance(execution_id, str)
        row = db.execution(execution_id)
        assert row.pipeline_name == "on_signal"
        assert row.status == "Completed"
        runner.set_trigger_enabled("signal", False)
        assert runner.list_trigger_schedules(True, None, None) == []
        assert runner.get_trigger_schedule("signal")["enabled"] is False  # type: ignore[index]
        runner.set_trigger_enabled("no_such_trigger", True)  # silent no-op
        assert runner.get_trigger_schedule("no_such_trigger") is None
        assert runner.get_trigger_execution_history("no_such_trigger") == []


def test_a_trigger_registered_while_running_is_listed_at_once(db: Database) -> None:
    with db.runner() as runner:
        assert runner.get_trigger_schedule("late") is None
        cloaca.trigger("nowhere", name="late", poll_interval="2m")(
            lambda: cloaca.TriggerResult.skip()
        )
        schedule = runner.get_trigger_schedule("late")
        assert schedule is not None
        assert schedule["poll_interval_ms"] == 120_000
        assert schedule["workflow_name"] == "nowhere"


def test_argument_errors(db: Database) -> None:
    with db.runner() as runner:
        with pytest.raises(TypeError):
            runner.get_trigger_schedule(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            runner.set_trigger_enabled("t", "yes")  # type: ignore[arg-type]
        with pytest.raises(OverflowError):
            runner.get_trigger_execution_history("t", -1)
        with pytest.raises(TypeError):
            runner.list_trigger_schedules(None, 1.5)  # type: ignore[arg-type]


def test_bad_poll_intervals_name_the_value() -> None:
    for text in ("1h", "1.5s", "5S", "-1s", ""):
        with pytest.raises(ValueError, match="Invalid poll_interval: Invalid duration"):
            cloaca.trigger("wf", poll_interval=text)
    with pytest.raises(ValueError, match=r"Invalid duration: 1h$"):
        cloaca.trigger("wf", poll_interval=" 1h ")
