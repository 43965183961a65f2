"""Your first workflow: three tasks in a chain, run durably on SQLite.

python examples/01_first_workflow.py [DATABASE_URL]
"""

from __future__ import annotations

from _common import database_url

import cloaca

with cloaca.WorkflowBuilder("invoice_flow") as wf:
    wf.description("Collect order lines, price them and summarise")

    @cloaca.task()
    def collect_lines(ctx):
        ctx.set("lines", [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}])
        return ctx

    @cloaca.task(dependencies=[collect_lines], retry_attempts=3)
    def price_lines(ctx):
        table = {"A1": 4.5, "B7": 10.0}
        ctx.set(
            "total", sum(table[line["sku"]] * line["qty"] for line in ctx.get("lines"))
        )
        return ctx

    @cloaca.task(id="summarise", dependencies=["price_lines"])
    def build_summary(ctx):
        ctx["summary"] = f"{len(ctx['lines'])} lines, total {ctx['total']}"
        return ctx


if __name__ == "__main__":
    url = database_url("first_workflow")
    with cloaca.DefaultRunner(url) as runner:
        result = runner.execute("invoice_flow", cloaca.Context({"invoice_no": 7}))
    print("status: ", result.status)
    print("summary:", result.final_context.get("summary"))
    print("stored in", url)
    assert result.status == "Completed"
    assert result.final_context.get("summary") == "2 lines, total 19.0"
