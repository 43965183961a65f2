"""Event triggers: a polled function fires a workflow when something happens.

The trigger below watches an in-memory inbox every 100 ms. When an order arrives it
fires ``process_order`` with the order as context; a fire with the same context is
not started again while the first one is still running (``allow_concurrent=False``).

    python examples/08_event_trigger.py [DATABASE_URL]
"""

from __future__ import annotations

import threading
import time

from _common import database_url

import cloaca

inbox: list[dict] = []
inbox_lock = threading.Lock()
processed: list[int] = []

with cloaca.WorkflowBuilder("process_order"):

    @cloaca.task(id="process")
    def process(ctx):
        processed.append(ctx.get("order_id"))
        ctx.set("processed_by", ctx.get("trigger_name"))
        return ctx


@cloaca.trigger("process_order", name="new_orders", poll_interval="100ms")
def new_orders():
    with inbox_lock:
        if not inbox:
            return cloaca.TriggerResult.skip()
        order = inbox.pop(0)
    return cloaca.TriggerResult.fire(cloaca.Context(order))


with cloaca.DefaultRunner(database_url("event_trigger")) as runner:
    schedule = runner.get_trigger_schedule("new_orders")
    assert schedule is not None
    print(
        "trigger", schedule["trigger_name"], "->", schedule["workflow_name"],
        f"every {schedule['poll_interval_ms']} ms",
    )  # fmt: skip

    with inbox_lock:
        inbox.extend({"order_id": n, "amount": 10 * n} for n in (1, 2, 3))

    # Wait (at most 15 s) until the three fires have run to completion.
    deadline = time.monotonic() + 15
    fires = []
    while time.monotonic() < deadline:
        fires = runner.get_trigger_execution_history("new_orders")
        if len(fires) == 3 and all(f["completed_at"] for f in fires):
            break
        time.sleep(0.1)
    assert len(fires) == 3, fires
    assert all(f["completed_at"] and f["pipeline_execution_id"] for f in fires)
    assert sorted(processed) == [1, 2, 3], processed
    print("processed orders:", sorted(processed))

    runner.set_trigger_enabled("new_orders", False)
    assert runner.get_trigger_schedule("new_orders")["enabled"] is False
    print("trigger disabled; fires recorded:", len(fires))
