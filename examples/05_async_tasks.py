"""``async def`` tasks are awaited on the runtime's event loop.

python examples/05_async_tasks.py [DATABASE_URL]
"""

from __future__ import annotations

import anyio
from _common import database_url

import cloaca

with cloaca.WorkflowBuilder("crawl"):

    @cloaca.task(id="fetch_pages")
    async def fetch_pages(ctx):
        pages = {}

        async def fetch(url):
            await anyio.sleep(0.01)  # stands in for network I/O
            pages[url] = len(url)

        async with anyio.create_task_group() as tg:
            for url in ctx.get("urls"):
                tg.start_soon(fetch, url)
        ctx.set("sizes", pages)
        return ctx

    @cloaca.task(id="total", dependencies=["fetch_pages"])
    async def total(ctx):
        ctx.set("total", sum(ctx.get("sizes").values()))
        return ctx


if __name__ == "__main__":
    urls = ["https://a.example/", "https://b.example/x", "https://c.example/yz"]
    with cloaca.DefaultRunner(database_url("async_tasks")) as runner:
        result = runner.execute("crawl", cloaca.Context({"urls": urls}))
    print(result.status, result.final_context.get("total"))
    assert result.final_context.get("total") == sum(len(u) for u in urls)
