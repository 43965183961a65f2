"""Working with Context: values are JSON, copied in and out, and flow downstream.

python examples/02_context_handling.py [DATABASE_URL]
"""

from __future__ import annotations

from _common import database_url

import cloaca

with cloaca.WorkflowBuilder("profile_flow"):

    @cloaca.task(id="load_user")
    def load_user(ctx):
        ctx.insert("user", {"name": ctx.get("name"), "tags": ["new"]})
        return ctx

    @cloaca.task(id="enrich", dependencies=["load_user"])
    def enrich(ctx):
        user = ctx.get("user")  # a copy: store it back with set()
        user["tags"].append("verified")
        ctx.set("user", user)
        ctx.update("name", ctx.get("name").upper())
        return ctx

    @cloaca.task(id="report", dependencies=["enrich"])
    def report(ctx):
        ctx["report"] = f"{ctx['name']} {ctx['user']['tags']}"
        ctx.remove("scratch")
        return ctx


if __name__ == "__main__":
    ctx = cloaca.Context({"name": "ada", "scratch": True})
    print("input:", ctx.to_json())
    with cloaca.DefaultRunner(database_url("context_handling")) as runner:
        result = runner.execute("profile_flow", ctx)
    final = result.final_context
    print("output:", final.to_json())
    assert final.get("report") == "ADA ['new', 'verified']"
    assert "scratch" not in final
    assert ctx.get("name") == "ada"  # the caller's context is never modified
