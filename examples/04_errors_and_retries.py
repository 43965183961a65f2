"""Retries with backoff, callbacks, and what a failed workflow reports.

python examples/04_errors_and_retries.py [DATABASE_URL]
"""

from __future__ import annotations

from _common import database_url

import cloaca

attempts = {"fetch_rates": 0}


def log_failure(task_id, error, ctx):
    print(f"  on_failure({task_id}): {error}")


def log_success(task_id, ctx):
    print(f"  on_success({task_id})")


with cloaca.WorkflowBuilder("rates_flow"):

    @cloaca.task(
        id="fetch_rates",
        retry_attempts=4,
        retry_backoff="exponential",
        retry_delay_ms=20,
        retry_condition="transient",
        on_failure=log_failure,
        on_success=log_success,
    )
    def fetch_rates(ctx):
        attempts["fetch_rates"] += 1
        if attempts["fetch_rates"] < 3:
            raise ConnectionError("rate service unavailable")
        ctx.set("rate", 1.08)
        return ctx

    @cloaca.task(id="convert", dependencies=["fetch_rates"])
    def convert(ctx):
        ctx.set("eur", round(100 * ctx.get("rate"), 2))
        return ctx


with cloaca.WorkflowBuilder("broken_flow"):

    @cloaca.task(id="validate", retry_attempts=1, on_failure=log_failure)
    def validate(ctx):
        raise ValueError("order 7 has no lines")

    @cloaca.task(id="notify", dependencies=["validate"])
    def notify(ctx):
        # Runs anyway: dependents of a failed task still run, without its output.
        ctx.set("notified", "validated" in ctx)
        return ctx


if __name__ == "__main__":
    with cloaca.DefaultRunner(database_url("errors_and_retries")) as runner:
        print("rates_flow:")
        ok = runner.execute("rates_flow", cloaca.Context())
        print(
            " ",
            ok.status,
            ok.final_context.get("eur"),
            "after",
            attempts["fetch_rates"],
            "attempts",
        )
        print("broken_flow:")
        failed = runner.execute("broken_flow", cloaca.Context())
        print(" ", failed.status, "-", failed.error_message)
    assert ok.status == "Completed"
    assert attempts["fetch_rates"] == 3
    assert failed.status == "Failed"
    assert "validate" in failed.error_message
