"""The runtime's headline figures: 3-task chain latency and one-task throughput.

    python -m benchmarks.runtime_figures [--db sqlite|postgres|URL]
        [--runs 200] [--burst 1000]

Latency: median (and p95/p99) of ``--runs`` executions of a 3-task chain, one at a
time through ``DefaultRunner.execute`` on an idle runner (submit to result).
Throughput: ``--burst`` one-task workflows submitted at once through ``AsyncRunner``,
workflows per second from first submit to last result. Both start from a fresh
database; schema creation and warm-up are outside the measured part. The full
workload suite (``cloaca bench``) is its own issue; this script is the runtime's
quick check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cloaca

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def define_workflows() -> None:
    with cloaca.WorkflowBuilder("bench_chain3"):

        @cloaca.task(id="a")
        def a(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("a", 1)
            return ctx

        @cloaca.task(id="b", dependencies=["a"])
        def b(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("b", ctx.get("a") + 1)
            return ctx

        @cloaca.task(id="c", dependencies=["b"])
        def c(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("c", ctx.get("b") + 1)
            return ctx

    with cloaca.WorkflowBuilder("bench_one"):

        @cloaca.task(id="only")
        def only(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("done", ctx.get("n"))
            return ctx


def resolve(db: str) -> tuple[str, str | None, str]:
    """(url, schema, label) for ``--db``."""
    if db == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="cloaca-bench-")) / "bench.db"
        return "sqlite://" + str(path), None, "sqlite file"
    if db == "postgres":
        return PG_URL, "bench_" + uuid.uuid4().hex[:12], "postgresql"
    return db, None, db


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure_latency(url: str, schema: str | None, runs: int) -> dict[str, float]:
    config = cloaca.DefaultRunnerConfig()
    with cloaca.DefaultRunner._open(url, config, schema) as runner:
        for _ in range(20):  # warm-up
            runner.execute("bench_chain3", cloaca.Context())
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            result = runner.execute("bench_chain3", cloaca.Context())
            samples.append((time.perf_counter() - started) * 1000)
            assert result.status == "Completed"
        stats = runner._runtime.journal_stats.as_dict()
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": percentile(samples, 0.95),
        "p99_ms": percentile(samples, 0.99),
        **{
            f"journal_{k}" if not k.startswith("journal") else k: v
            for k, v in stats.items()
        },
    }


async def measure_throughput(
    url: str, schema: str | None, count: int
) -> dict[str, float]:
    config = cloaca.DefaultRunnerConfig(max_concurrent_tasks=32)
    runner = cloaca.AsyncRunner._open(url, config, schema)
    async with runner:
        await asyncio.gather(
            *(runner.execute("bench_one", cloaca.Context({"n": n})) for n in range(50))
        )
        assert runner._runtime is not None
        before = runner._runtime.journal_stats.as_dict()
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                runner.execute("bench_one", cloaca.Context({"n": n}))
                for n in range(count)
            )
        )
        elapsed = time.perf_counter() - started
        after = runner._runtime.journal_stats.as_dict()
    assert all(r.status == "Completed" for r in results)
    commits = after["journal_commits"] - before["journal_commits"]
    entries = after["journal_entries"] - before["journal_entries"]
    return {
        "workflows_per_s": count / elapsed,
        "seconds": elapsed,
        "journal_commits": commits,
        "mean_batch_size": entries / commits if commits else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--json", dest="json_file")
    args = parser.parse_args(argv)
    define_workflows()

    url, schema, label = resolve(args.db)
    latency = measure_latency(url, schema, args.runs)
    url, schema, _ = resolve(args.db)
    throughput = asyncio.run(measure_throughput(url, schema, args.burst))
    figures: dict[str, Any] = {
        "backend": label,
        "latency": latency,
        "throughput": throughput,
    }
    print(f"backend: {label}")
    print(
        f"3-task chain latency over {args.runs} runs: p50 {latency['p50_ms']:.2f} ms, "
        f"p95 {latency['p95_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms"
    )
    print(
        f"{args.burst} one-task workflows at once: {throughput['workflows_per_s']:.0f} "
        f"workflows/s ({throughput['seconds']:.2f} s, "
        f"{throughput['journal_commits']:.0f} "
        f"commits, mean batch {throughput['mean_batch_size']:.1f} entries)"
    )
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
