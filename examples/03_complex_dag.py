"""Fan-out and fan-in: one root, three parallel branches, one join.

Outputs of the branches are merged for the join: lists are unioned, dicts merged,
other values folded in task-id order (API.md 4.5).

    python examples/03_complex_dag.py [DATABASE_URL]
"""

from __future__ import annotations

from _common import database_url

import cloaca

REGIONS = ("emea", "apac", "amer")

with cloaca.WorkflowBuilder("regional_sales"):

    @cloaca.task(id="fetch")
    def fetch(ctx):
        ctx.set("trail", ["fetch"])
        ctx.set("totals", {})
        return ctx

    def branch(region):
        @cloaca.task(id=f"sum_{region}", dependencies=["fetch"])
        def summed(ctx):
            ctx.set("trail", [*ctx.get("trail"), region])
            ctx.set("totals", {region: len(region) * 100})
            return ctx

    for region in REGIONS:
        branch(region)

    @cloaca.task(id="join", dependencies=[f"sum_{r}" for r in REGIONS])
    def join(ctx):
        ctx.set("grand_total", sum(ctx.get("totals").values()))
        return ctx


if __name__ == "__main__":
    with cloaca.DefaultRunner(database_url("complex_dag")) as runner:
        result = runner.execute("regional_sales", cloaca.Context())
    final = result.final_context
    print("trail:", final.get("trail"))
    print("totals:", final.get("totals"), "grand total:", final.get("grand_total"))
    assert final.get("trail") == ["fetch", "amer", "apac", "emea"]
    assert final.get("grand_total") == 1200
