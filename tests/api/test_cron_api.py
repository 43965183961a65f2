"""The cron methods through DefaultRunner and AsyncRunner (API.md 3.9.4)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

import cloaca

from .conftest import Database

SCHEDULE_KEYS = {
    "id",
    "workflow_name",
    "cron_expression",
    "timezone",
    "enabled",
    "catchup_policy",
    "next_run_at",
    "last_run_at",
    "created_at",
    "updated_at",
}


def test_register_list_get_update_enable_delete(db: Database) -> None:
    with db.runner() as runner:
        sid = runner.register_cron_workflow("not_yet_defined", "0 9 * * MON-FRI", "UTC")
        assert str(uuid.UUID(sid)) == sid
        other = runner.register_cron_workflow("a_first", "*/5 * * * *", "Europe/Berlin")
        schedule = runner.get_cron_schedule(sid)
        assert set(schedule) == SCHEDULE_KEYS
        assert schedule["enabled"] is True
        assert schedule["catchup_policy"] == "skip"
        assert schedule["last_run_at"] is None
        assert schedule["next_run_at"].endswith(":00+00:00")
        assert datetime.fromisoformat(schedule["next_run_at"]) > datetime.now(UTC)
        listed = runner.list_cron_schedules(None, None, None)
        assert [s["id"] for s in listed] == [other, sid]
        assert runner.list_cron_schedules() == listed
        assert [s["id"] for s in runner.list_cron_schedules(False, 1, 1)] == [sid]
        runner.update_cron_schedule(sid, "30 6 1 * *", "Asia/Tokyo")
        updated = runner.get_cron_schedule(sid)
        assert (updated["cron_expression"], updated["timezone"]) == (
            "30 6 1 * *",
            "Asia/Tokyo",
        )
        assert updated["next_run_at"].endswith("T21:30:00+00:00")
        runner.set_cron_schedule_enabled(sid, False)
        assert runner.get_cron_schedule(sid)["enabled"] is False
        assert [s["id"] for s in runner.list_cron_schedules(True, None, None)] == [
            other
        ]
        runner.set_cron_schedule_enabled(str(uuid.uuid4()), True)  # silent no-op
        assert runner.get_cron_execution_history(sid, None, None) == []
        assert runner.get_cron_execution_history(str(uuid.uuid4())) == []
        runner.delete_cron_schedule(sid)
        runner.delete_cron_schedule(sid)  # silent no-op
        assert [s["id"] for s in runner.list_cron_schedules()] == [other]
        with pytest.raises(ValueError, match=r"^Failed to get cron schedule: "):
            runner.get_cron_schedule(sid)
        with pytest.raises(ValueError, match=r"^Failed to update cron schedule: "):
            runner.update_cron_schedule(sid, "* * * * *", "UTC")


def test_errors_name_the_bad_value(db: Database) -> None:
    with db.runner() as runner:
        with pytest.raises(ValueError) as bad_expr:
            runner.register_cron_workflow("wf", "61 * * * *", "UTC")
        assert str(bad_expr.value).startswith("Failed to register cron workflow: ")
        assert "Invalid cron expression or timezone" in str(bad_expr.value)
        assert "61 * * * *" in str(bad_expr.value)
        with pytest.raises(ValueError, match="Invalid cron expression or timezone"):
            runner.register_cron_workflow("wf", "* * * * *", "Mars/Olympus")
        with pytest.raises(ValueError, match="Mars/Olympus"):
            runner.register_cron_workflow("wf", "* * * * *", "Mars/Olympus")
        sid = runner.register_cron_workflow("wf", "* * * * *", "UTC")
        with pytest.raises(
            ValueError, match=r"^Failed to update cron schedule: Invalid"
        ):
            runner.update_cron_schedule(sid, "* * *", "UTC")
        checks: list[tuple[Callable[[str], object], str]] = [
            (runner.get_cron_schedule, "Failed to get cron schedule: "),
            (runner.delete_cron_schedule, "Failed to delete cron schedule: "),
            (
                runner.get_cron_execution_history,
                "Failed to get cron execution history: ",
            ),
        ]
        for call, prefix in checks:
            with pytest.raises(ValueError) as info:
                call("not-a-uuid")
            assert str(info.value).startswith(prefix)
            assert "Invalid schedule ID" in str(info.value)
        with pytest.raises(
            ValueError, match=r"^Failed to update cron schedule: Invalid schedule ID"
        ):
            runner.set_cron_schedule_enabled("nope", True)
        with pytest.raises(ValueError, match=r"^Invalid datetime format"):
            runner.get_cron_execution_stats("invalid-datetime")
        with pytest.raises(ValueError, match=r"^Invalid datetime format"):
            runner.get_cron_execution_stats(datetime.now().isoformat())
        with pytest.raises(TypeError):
            runner.register_cron_workflow(None, "* * * * *", "UTC")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            runner.list_cron_schedules("yes")  # type: ignore[arg-type]
        with pytest.raises(OverflowError):
            runner.list_cron_schedules(None, -1, None)
        with pytest.raises(TypeError):
            runner.set_cron_schedule_enabled(sid, 1)  # type: ignore[arg-type]


def test_stats_over_every_schedule(db: Database) -> None:
    with db.runner() as runner:
        since = datetime.now(UTC).isoformat()
        stats = runner.get_cron_execution_stats(since)
        assert stats == {
            "total_executions": 0,
            "successful_executions": 0,
            "lost_executions": 0,
            "success_rate": 0.0,
        }
        assert isinstance(stats["success_rate"], float)


def test_disabled_cron_makes_every_method_raise(db: Database) -> None:
    config = cloaca.DefaultRunnerConfig(enable_cron_scheduling=False)
    sid = str(uuid.uuid4())
    with db.runner(config) as runner:
        calls: list[Callable[[], object]] = [
            lambda: runner.register_cron_workflow("wf", "* * * * *", "UTC"),
            lambda: runner.list_cron_schedules(None, None, None),
            lambda: runner.get_cron_schedule(sid),
            lambda: runner.update_cron_schedule(sid, "* * * * *", "UTC"),
            lambda: runner.set_cron_schedule_enabled(sid, True),
            lambda: runner.delete_cron_schedule(sid),
            lambda: runner.get_cron_execution_history(sid, None, None),
            lambda: runner.get_cron_execution_stats(datetime.now(UTC).isoformat()),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="Cron scheduling not enabled"):
                call()
        # Triggers do not depend on cron.
        assert runner.list_trigger_schedules(None, None, None) == []


def test_a_registered_schedule_fires_through_the_runner(db: Database) -> None:
    seen: list[str] = []
    with cloaca.WorkflowBuilder("every_second"):

        @cloaca.task(id="tick")
        def tick(ctx: cloaca.Context) -> cloaca.Context:
            seen.append(ctx.get("scheduled_time"))
            return ctx

    config = cloaca.DefaultRunnerConfig(cron_poll_interval_seconds=1)
    with db.runner(config) as runner:
        sid = runner.register_cron_workflow("every_second", "* * * * * *", "UTC")
        schedules = runner._runtime.schedules
        assert schedules is not None
        stats = schedules.cron_stats
        runner._call(stats.wait_for, lambda: stats.fired >= 1)
        history = runner.get_cron_execution_history(sid)
        assert history
        execution_id = str(history[0]["pipeline_execution_id"])
        runner._wait_for(execution_id)
        row = db.execution(execution_id)
        assert row.pipeline_name == "every_second"
        assert row.status == "Completed"
        assert history[0]["scheduled_time"] in seen
        summary = runner.get_cron_execution_stats("2000-01-01T00:00:00+00:00")
        assert summary["successful_executions"] >= 1
        assert summary["success_rate"] == 100.0


def test_signatures_are_the_reference_ones() -> None:
    expected = {
        "register_cron_workflow": [
            "self",
            "workflow_name",
            "cron_expression",
            "timezone",
        ],
        "list_cron_schedules": ["self", "enabled_only", "limit", "offset"],
        "get_cron_schedule": ["self", "schedule_id"],
        "update_cron_schedule": ["self", "schedule_id", "cron_expression", "timezone"],
        "set_cron_schedule_enabled": ["self", "schedule_id", "enabled"],
        "delete_cron_schedule": ["self", "schedule_id"],
        "get_cron_execution_history": ["self", "schedule_id", "limit", "offset"],
        "get_cron_execution_stats": ["self", "since"],
        "list_trigger_schedules": ["self", "enabled_only", "limit", "offset"],
        "get_trigger_schedule": ["self", "trigger_name"],
        "set_trigger_enabled": ["self", "trigger_name", "enabled"],
        "get_trigger_execution_history": ["self", "trigger_name", "limit", "offset"],
    }
    for runner in (cloaca.DefaultRunner, cloaca.AsyncRunner):
        for name, params in expected.items():
            signature = inspect.signature(getattr(runner, name))
            assert list(signature.parameters) == params, (runner, name)


@pytest.mark.anyio
async def test_async_runner_methods(db: Database) -> None:
    async with db.async_runner() as runner:
        sid = await runner.register_cron_workflow("wf", "0 0 * * *", "UTC")
        assert [s["id"] for s in await runner.list_cron_schedules()] == [sid]
        assert (await runner.get_cron_schedule(sid))["workflow_name"] == "wf"
        await runner.set_cron_schedule_enabled(sid, False)
        await runner.update_cron_schedule(sid, "0 1 * * *", "UTC")
        assert (await runner.get_cron_schedule(sid))["cron_expression"] == "0 1 * * *"
        assert await runner.get_cron_execution_history(sid, None, None) == []
        stats = await runner.get_cron_execution_stats("2000-01-01T00:00:00Z")
        assert stats["total_executions"] == 0
        await runner.delete_cron_schedule(sid)
        assert await runner.list_cron_schedules(None, None, None) == []
        assert await runner.get_trigger_schedule("none") is None
        assert await runner.list_trigger_schedules() == []
        await runner.set_trigger_enabled("none", False)
        assert await runner.get_trigger_execution_history("none") == []
        with pytest.raises(
            ValueError, match=r"^Failed to get cron schedule: Invalid schedule ID"
        ):
            await runner.get_cron_schedule("x")
