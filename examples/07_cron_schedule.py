"""Cron scheduling: run a workflow every second, then inspect and manage the schedule.

Each tick is claimed durably before its execution starts (so it runs once, even
with several runners on one database) and linked to that execution afterwards.

    python examples/07_cron_schedule.py [DATABASE_URL]
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from _common import database_url

import cloaca

with cloaca.WorkflowBuilder("heartbeat"):

    @cloaca.task(id="beat")
    def beat(ctx):
        # The cron machinery puts the tick and the schedule into the context.
        ctx.set("beat_for", ctx.get("scheduled_time"))
        return ctx


config = cloaca.DefaultRunnerConfig(cron_poll_interval_seconds=1)
started = datetime.now(UTC).isoformat()

with cloaca.DefaultRunner.with_config(database_url("cron_schedule"), config) as runner:
    # Six fields: the first is seconds. Interpreted in the given IANA time zone.
    schedule_id = runner.register_cron_workflow("heartbeat", "* * * * * *", "UTC")
    daily = runner.register_cron_workflow(
        "heartbeat", "0 9 * * MON-FRI", "Europe/Paris"
    )

    # Wait (at most 15 s) until two ticks have been handed off.
    deadline = time.monotonic() + 15
    history = []
    while time.monotonic() < deadline:
        history = [
            h
            for h in runner.get_cron_execution_history(schedule_id)
            if h["pipeline_execution_id"]
        ]
        if len(history) >= 2:
            break
        time.sleep(0.2)
    assert len(history) >= 2, history
    ticks = sorted({h["scheduled_time"] for h in history})
    assert len(ticks) == len(history), "each tick fires exactly once"
    print("ticks fired:", ", ".join(ticks[:2]), "...")

    runner.set_cron_schedule_enabled(schedule_id, False)
    for schedule in runner.list_cron_schedules():
        state = "enabled" if schedule["enabled"] else "disabled"
        print(f"{schedule['cron_expression']:>16} {schedule['timezone']:<13} {state}")
    paris = runner.get_cron_schedule(daily)
    print("next weekday 09:00 in Paris, in UTC:", paris["next_run_at"])

    stats = runner.get_cron_execution_stats(started)
    print(
        f"{stats['total_executions']} executions, "
        f"{stats['success_rate']:.0f}% handed off"
    )
    assert stats["successful_executions"] >= 2
    assert stats["success_rate"] == 100.0

    runner.delete_cron_schedule(daily)
    assert [s["id"] for s in runner.list_cron_schedules()] == [schedule_id]
