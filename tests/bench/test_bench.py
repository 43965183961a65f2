"""Smoke tests of the ``cloaca bench`` harness with tiny counts.

They check that the suite measures what it says (executions counted, engine
counters as deltas, shares adding up, fresh databases, reports and exit codes);
never how fast anything is.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import textwrap
from pathlib import Path

import anyio
import pytest

from cloaca.bench import command
from cloaca.bench.harness import Measurement, WorkerSpec, combine, measure, percentile
from cloaca.bench.report import Result, render_table
from cloaca.bench.runs import (
    Database,
    resolve_database,
    run_workload,
    share_of,
    take_from,
)
from cloaca.bench.workloads import STANDARD, Target, workload_named

SQLITE = Database(kind="sqlite", url=None, label="sqlite file")
MEMORY = "sqlite://:memory:"


def test_percentile_interpolates_and_handles_empty() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0


def test_shares_add_up_to_the_workload() -> None:
    simple = workload_named("simple")
    shares = [share_of(simple, 3, i) for i in range(3)]
    assert sum(s.count for s in shares) == simple.count
    assert all(s.in_flight == simple.in_flight // 3 for s in shares)
    burst = workload_named("burst").scaled(0.001)
    assert burst.count == burst.in_flight == 10
    halves = [share_of(burst, 2, i) for i in range(2)]
    assert [(s.count, s.in_flight) for s in halves] == [(5, 5), (5, 5)]


def test_every_standard_workload_of_the_issue_is_there() -> None:
    names = [w.name for w in STANDARD]
    assert names == [
        "simple", "pipeline", "parallel", "latency", "wide", "chain", "burst", "cpu",
        "cpu_async",
    ]  # fmt: skip
    counts = {w.name: (w.count, w.in_flight) for w in STANDARD}
    assert counts["simple"] == (2000, 32)
    assert counts["pipeline"] == (1000, 32)
    assert counts["parallel"] == (600, 32)
    assert counts["latency"] == (200, 1)
    assert counts["burst"] == (10_000, 10_000)
    for workload in STANDARD:
        assert workload.max_concurrent_tasks >= workload.in_flight or (
            workload.name == "burst"
        )


def test_combine_spans_all_processes_and_sums_counters() -> None:
    pipeline = workload_named("pipeline")
    parts = [
        Measurement(
            started=10.0, finished=12.0, completed=4, latencies_ms=[1.0, 3.0],
            journal_commits=2, journal_entries=10, commit_seconds=0.004,
            queue_waits=4, queue_wait_seconds=0.004, peak_rss_kb=2048,
            cpu_seconds=0.010,
        ),
        Measurement(
            started=11.0, finished=14.0, completed=3, failed=1, latencies_ms=[2.0],
            journal_commits=3, journal_entries=5, commit_seconds=0.001,
            queue_waits=1, queue_wait_seconds=0.001, peak_rss_kb=4096,
            cpu_seconds=0.006,
        ),
    ]  # fmt: skip
    figures = combine(pipeline, parts)
    assert figures["seconds"] == 4.0
    assert figures["executions"] == 8
    assert figures["failed"] == 1
    assert figures["workflows_per_s"] == 2.0
    assert figures["p50_ms"] == 2.0
    assert figures["mean_batch_size"] == 3.0
    assert figures["mean_commit_ms"] == pytest.approx(1.0)
    assert figures["task_queue_wait_ms"] == pytest.approx(1.0)
    assert figures["peak_rss_mb"] == 4.0
    assert figures["ms_per_step"] == pytest.approx(1000 * 4.0 / (8 * 3))
    assert figures["cpu_ms_per_workflow"] == pytest.approx(2.0)


def test_in_process_run_counts_executions_and_engine_internals() -> None:
    simple = workload_named("simple").scaled(0.01)
    seen: list[tuple[int, int]] = []
    figures = run_workload(
        simple, SQLITE, in_process=True, progress=lambda d, t: seen.append((d, t))
    )
    assert figures["executions"] == simple.count == 20
    assert figures["failed"] == 0
    # Counters are deltas over the measured part: the warm-up is not in them.
    assert figures["task_attempts"] == simple.count
    assert figures["journal_commits"] >= 1
    assert figures["mean_batch_size"] > 0
    assert figures["p50_ms"] <= figures["p99_ms"]
    assert seen[-1] == (20, 20)


def test_parallel_workflow_runs_five_tasks_per_execution() -> None:
    parallel = workload_named("parallel").scaled(0.01)
    figures = run_workload(parallel, SQLITE, in_process=True)
    assert figures["executions"] == 6
    assert figures["task_attempts"] == 5 * 6


def test_worker_processes_share_the_workload() -> None:
    pipeline = workload_named("pipeline").scaled(0.01)
    seen: list[tuple[int, int]] = []
    figures = run_workload(
        pipeline, SQLITE, processes=2, progress=lambda d, t: seen.append((d, t))
    )
    assert figures["processes"] == 2
    assert figures["executions"] == pipeline.count == 10
    assert figures["failed"] == 0
    assert figures["task_attempts"] == 3 * pipeline.count
    assert figures["peak_rss_mb"] > 0
    assert seen[-1] == (10, 10)


def test_a_shared_pool_decides_how_many_executions_a_process_runs() -> None:
    context = multiprocessing.get_context("spawn")
    pool = context.Value("q", 7)
    take = take_from(pool)
    spec = WorkerSpec(workload=workload_named("simple").scaled(0.01), url=MEMORY)
    assert spec.workload.count == 20
    measurement = measure(spec, lambda: None, take=take)
    # The pool, not the share, says how many: 7 granted, 7 run, none left.
    assert measurement.completed == 7
    assert len(measurement.latencies_ms) == 7
    assert pool.value == 0
    assert take() is False


@pytest.mark.postgres
def test_postgres_run_uses_a_fresh_schema_and_drops_it() -> None:
    database = resolve_database("postgres")
    chain = workload_named("latency").scaled(0.02)
    figures = run_workload(chain, database, in_process=True)
    assert figures["executions"] == chain.count == 4
    assert figures["failed"] == 0

    async def bench_schemas() -> int:
        import asyncpg

        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            rows = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_%'"
            )
        finally:
            await conn.close()
        return len(rows)

    before = anyio.run(bench_schemas)
    run_workload(chain, database, in_process=True)
    assert anyio.run(bench_schemas) <= before


def test_table_marks_missed_targets() -> None:
    result = Result(
        workload=workload_named("latency"),
        backend="sqlite",
        database="sqlite file",
        processes=1,
        runs=[{"p50_ms": 1.0, "p95_ms": 5.0, "p99_ms": 30.0}, {"p50_ms": 3.0}],
    )
    table = render_table([result])
    assert "| latency | sqlite | ms p50 | 2.00 (1.00-3.00) | <= 2 | yes |" in table
    assert "| latency | sqlite | ms p99 | 30.0 (30.0-30.0) | <= 10 | NO |" in table
    assert Target("ratio", ">=", 1.7).met(1.7)
    assert not Target("seconds", "<=", 0.25).met(0.3)


def test_resolve_database_forms() -> None:
    assert resolve_database("sqlite").kind == "sqlite"
    pg = resolve_database("postgresql://u:secret@h/db")
    assert pg.kind == "postgres"
    assert "secret" not in pg.label
    assert resolve_database("sqlite:///tmp/x.db").kind == "sqlite"
    with pytest.raises(ValueError, match="--db"):
        resolve_database("mysql://h/db")


def test_command_writes_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    status = command.main(
        [
            "--workload", "simple", "--workload", "chain", "--scale", "0.005",
            "--repeat", "2", "--in-process", "--no-progress", "--json", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert (
        "| workload | backend | figure | median (min-max) | target | met |" in printed
    )
    assert "| simple | sqlite | workflows/s |" in printed
    assert "| chain | sqlite | ms/step |" in printed
    doc = json.loads(out.read_text())
    assert doc["suite"] == "cloaca bench"
    assert doc["machine"]["cpu_count"] >= 1
    assert doc["machine"]["python"]
    assert "git_revision" in doc
    simple, chain = doc["results"]
    assert simple["workload"] == "simple"
    assert len(simple["runs"]) == 2
    assert all(run["executions"] == 10 for run in simple["runs"])
    assert simple["config"]["max_concurrent_tasks"] == 32
    assert simple["targets"][0]["figure"] == "workflows_per_s"
    assert isinstance(simple["targets"][0]["met"], bool)
    assert (
        chain["summary"]["ms_per_step"]["min"] <= chain["summary"]["ms_per_step"]["max"]
    )
    assert all(run["task_attempts"] == 200 for run in chain["runs"])


def test_user_workload_reports_its_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bench_user_flows.py").write_text(
        textwrap.dedent(
            """
            import cloaca

            with cloaca.WorkflowBuilder("user_ok"):
                @cloaca.task(id="add")
                def add(ctx):
                    ctx.set("y", ctx.get("x") + 1)
                    return ctx

            with cloaca.WorkflowBuilder("user_bad"):
                @cloaca.task(id="boom", retry_attempts=1)
                def boom(ctx):
                    raise RuntimeError("no")
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "user.json"
    common = ["--executions", "6", "--concurrency", "3", "--context", '{"x": 1}',
              "--repeat", "1", "--in-process", "--no-progress"]  # fmt: skip
    ok = command.main(
        ["--workflow", "bench_user_flows:user_ok", *common, "--json", str(out)]
    )
    assert ok == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["workload"] == "user"
    assert result["config"]["in_flight"] == 3
    assert result["runs"][0]["executions"] == 6
    capsys.readouterr()
    bad = command.main(["--workflow", "bench_user_flows:user_bad", *common])
    assert bad == 1
    assert (
        "| user | sqlite | failed executions | 6 | 0 | NO |" in capsys.readouterr().out
    )


def test_command_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["--workload", "user"]) == 2
    assert "--workload user needs --workflow MODULE:NAME" in capsys.readouterr().err
    assert command.main(["--workflow", "nocolon"]) == 2
    assert "--workflow must be module:name" in capsys.readouterr().err
    assert command.main(["--workload", "simple", "--context", "[1]"]) == 2
    assert "--context must be a JSON object" in capsys.readouterr().err


def test_add_parser_wires_run_into_the_cloaca_command() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="cloaca")
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["bench", "--workload", "wide", "--db", "postgres", "--processes", "2"]
    )
    assert args.func is command.run
    assert (args.workload, args.db, args.processes) == (["wide"], ["postgres"], 2)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--processes", "0"])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_only() -> None:
    tty = _Tty()
    bar = command.ProgressBar(tty, enabled=True)
    bar.begin("simple sqlite 1/1")
    bar.update(10, 10)
    bar.end()
    assert "[" + "#" * 30 + "] 10/10" in tty.getvalue()
    plain = io.StringIO()
    quiet = command.ProgressBar(plain, enabled=True)
    quiet.begin("x")
    quiet.update(5, 10)
    assert plain.getvalue() == ""


@pytest.mark.parametrize("name", ["cpu", "cpu_async"])
def test_cpu_workload_compares_one_process_with_two(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cpu.json"
    status = command.main(
        ["--workload", name, "--scale", "0.02", "--repeat", "1", "--no-progress",
         "--json", str(out)]
    )  # fmt: skip
    assert status == 0
    (cpu,) = json.loads(out.read_text())["results"]
    (run,) = cpu["runs"]
    assert run["processes"] == 2
    assert run["executions"] == 12
    assert run["ratio"] == pytest.approx(
        run["workflows_per_s_n"] / run["workflows_per_s_1"]
    )
    assert f"| {name} | sqlite | x (N vs 1 process) |" in capsys.readouterr().out


def test_a_hung_worker_fails_its_run_and_the_others_still_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bench_hung_flows.py").write_text(
        textwrap.dedent(
            """
            import threading
            import cloaca

            with cloaca.WorkflowBuilder("user_hangs"):
                @cloaca.task(id="wait")
                def wait(ctx):
                    threading.Event().wait()
                    return ctx
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    status = command.main(
        ["--workflow", "bench_hung_flows:user_hangs", "--workload", "chain",
         "--scale", "0.01", "--executions", "1", "--repeat", "1", "--no-progress",
         "--stall-timeout", "1"]
    )  # fmt: skip
    assert status == 1
    captured = capsys.readouterr()
    assert "'user' stalled: no worker reported anything for 1s" in captured.err
    assert "| user | sqlite | run failed | 'user' stalled" in captured.out
    assert "| chain | sqlite | ms/step |" in captured.out
