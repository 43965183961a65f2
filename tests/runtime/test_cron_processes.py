"""Two runner processes on one PostgreSQL schema fire each tick exactly once.

The test starts this file twice as a script (``python test_cron_processes.py
<schema> <polls>``): each child runs a runtime with cron on the shared schema
until it has looked at the schedules ``polls`` times and its own executions have
ended. The schedule fires every second, so both children compete for every tick.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

POLLS = 4


def define_workflow() -> None:
    import cloaca

    with cloaca.WorkflowBuilder("every_second"):

        @cloaca.task(id="tick")
        async def tick(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("ticked_for", ctx.get("scheduled_time"))
            return ctx


async def child(schema: str, polls: int) -> None:
    from cloaca.config import RunnerSettings
    from cloaca.runtime.engine import Runtime
    from cloaca.runtime.outcome import ExecutionOutcome
    from tests.storage.pg_support import URL

    define_workflow()
    settings = RunnerSettings(cron_poll_interval_seconds=1, cron_enable_recovery=False)
    ended: list[ExecutionOutcome] = []
    changed = [anyio.Event()]

    def on_end(outcome: ExecutionOutcome) -> None:
        ended.append(outcome)
        changed[0].set()

    async with Runtime(URL, settings, schema=schema) as rt:
        rt.add_finish_listener(on_end)
        assert rt.schedules is not None
        stats = rt.schedules.cron_stats
        with anyio.fail_after(60):
            await stats.wait_for(lambda: stats.polls >= polls)
            while len(ended) < stats.fired:
                changed[0] = anyio.Event()
                await changed[0].wait()
    print(f"fired={stats.fired} ended={len(ended)}")


@pytest.mark.postgres
@pytest.mark.anyio
async def test_two_processes_fire_each_tick_once() -> None:
    from tests.storage import pg_support

    schema = pg_support.new_schema_name("two")
    store = await pg_support.make_postgres_store(schema)
    try:
        schedule_id = uuid.uuid4()
        now = datetime.now(UTC)
        await store.insert_cron_schedule(
            schedule_id=schedule_id,
            workflow_name="every_second",
            cron_expression="* * * * * *",
            timezone="UTC",
            next_run_at=now.replace(microsecond=0) + timedelta(seconds=1),
            now=now,
        )
        outputs: list[tuple[int, str, str]] = []
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(_run_child, schema, outputs)
        for returncode, out, err in outputs:
            assert returncode == 0, err
            assert out.startswith("fired=")
        fired = sum(int(out.split()[0].split("=")[1]) for _, out, _ in outputs)
        records = await store.list_cron_executions(schedule_id, limit=1000, offset=0)
        ticks = [r.scheduled_time for r in records]
        assert len(ticks) == len(set(ticks)) >= 2
        linked = [r.pipeline_execution_id for r in records]
        assert None not in linked
        assert len(set(linked)) == len(linked) == fired
        executions = await store.list_executions(
            pipeline_name="every_second", limit=1000
        )
        assert sorted(str(e.id) for e in executions) == sorted(str(i) for i in linked)
        assert {e.status for e in executions} == {"Completed"}
    finally:
        await store.close()
        await pg_support.drop_postgres_schema(schema)


ROOT = Path(__file__).resolve().parents[2]


async def _run_child(schema: str, outputs: list[tuple[int, str, str]]) -> None:
    done = await anyio.run_process(
        [sys.executable, __file__, schema, str(POLLS)], cwd=ROOT, check=False
    )
    outputs.append((done.returncode, done.stdout.decode(), done.stderr.decode()))


def _main(argv: list[str]) -> Any:
    sys.path.insert(0, str(ROOT))
    return anyio.run(child, argv[1], int(argv[2]))


if __name__ == "__main__":
    _main(sys.argv)
