"""An asyncio application embedding AsyncRunner on its own event loop.

Submits 200 executions concurrently and awaits them all, with no extra thread.

    python examples/06_asyncio_application.py [DATABASE_URL]
"""

from __future__ import annotations

import asyncio

from _common import database_url

import cloaca

with cloaca.WorkflowBuilder("score"):

    @cloaca.task(id="score")
    async def score(ctx):
        ctx.set("score", ctx.get("n") ** 2)
        return ctx


async def main() -> None:
    async with cloaca.AsyncRunner(database_url("asyncio_application")) as runner:
        results = await asyncio.gather(
            *(runner.execute("score", cloaca.Context({"n": n})) for n in range(200))
        )
    total = sum(r.final_context.get("score") for r in results)
    print(
        len(results),
        "executions,",
        sum(r.status == "Completed" for r in results),
        "completed",
    )
    print("sum of scores:", total)
    assert total == sum(n * n for n in range(200))


if __name__ == "__main__":
    asyncio.run(main())
