"""Results of ``cloaca bench``: summaries, the results table, JSON, plot, machine facts.

A :class:`Result` holds every run of one workload on one backend; its summary is the
median of the runs with their min and max, judged against the workload's targets
(:data:`cloaca.bench.workloads.TARGETS`). :func:`render_table` draws the results
table (Markdown, so it pastes into the README as it is), :func:`document` builds the
``--json`` document (every figure of every run, the machine and the git revision) and
:func:`plot` draws throughput and latency per workload with matplotlib, an optional
extra (``cloaca[bench]``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sqlite3
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from cloaca.bench.workloads import TARGETS, Target, Workload

__all__ = (
    "Result",
    "Summary",
    "document",
    "git_revision",
    "machine_facts",
    "plot",
    "render_internals",
    "render_table",
)

INTERNALS: Final = (
    "journal_commits",
    "mean_batch_size",
    "mean_commit_ms",
    "task_queue_wait_ms",
    "cpu_ms_per_workflow",
)

UNITS: Final = {
    "workflows_per_s": "workflows/s",
    "workflows_per_s_1": "workflows/s, 1 process",
    "workflows_per_s_n": "workflows/s, N processes",
    "p50_ms": "ms p50",
    "p95_ms": "ms p95",
    "p99_ms": "ms p99",
    "seconds": "s",
    "ms_per_step": "ms/step",
    "peak_rss_mb": "MB peak RSS",
    "ratio": "x (N vs 1 process)",
}


class Summary(msgspec.Struct, frozen=True):
    """One figure over the runs: median, min and max."""

    median: float
    min: float
    max: float


class Result(msgspec.Struct, kw_only=True):
    """Every run of one workload on one backend.

    Attributes:
        workload: The workload as run (scaled, ``--concurrency`` applied).
        backend: ``"sqlite"`` or ``"postgres"``.
        database: The database label.
        processes: Worker processes per run.
        runs: The figures of each run.
        error: Why the runs stopped early (a worker failed, died or stalled).
    """

    workload: Workload
    backend: str
    database: str
    processes: int
    runs: list[dict[str, float]] = msgspec.field(default_factory=list)
    error: str | None = None

    def summary(self, figure: str) -> Summary | None:
        """Median, min and max of ``figure`` over the runs (None if absent)."""
        values = [run[figure] for run in self.runs if figure in run]
        if not values:
            return None
        return Summary(statistics.median(values), min(values), max(values))

    @property
    def targets(self) -> tuple[Target, ...]:
        """The issue's targets for this workload on this backend."""
        return TARGETS.get(self.workload.name, {}).get(self.backend, ())

    def verdicts(self) -> list[tuple[Target, float, bool]]:
        """Each target with the median it is judged on and whether it holds."""
        out = []
        for target in self.targets:
            summary = self.summary(target.figure)
            if summary is not None:
                out.append((target, summary.median, target.met(summary.median)))
        return out

    @property
    def failed_executions(self) -> int:
        """Executions that did not end ``Completed``, over all runs."""
        return int(sum(run.get("failed", 0.0) for run in self.runs))


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(summary: Summary, runs: int) -> str:
    if runs < 2:
        return _number(summary.median)
    return f"{_number(summary.median)} ({_number(summary.min)}-{_number(summary.max)})"


def render_table(results: Sequence[Result]) -> str:
    """The results table: median (min-max) per figure, the targets, whether met."""
    lines = [
        "| workload | backend | figure | median (min-max) | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        targets = {t.figure: t for t in result.targets}
        for figure in result.workload.figures:
            summary = result.summary(figure)
            if summary is None:
                continue
            target = targets.get(figure)
            met = (
                ""
                if target is None
                else ("yes" if target.met(summary.median) else "NO")
            )
            unit = UNITS.get(figure, figure)
            lines.append(
                f"| {result.workload.name} | {result.backend} | {unit}"
                f" | {_cell(summary, len(result.runs))}"
                f" | {'' if target is None else target.describe()} | {met} |"
            )
        if result.error is not None:
            lines.append(
                f"| {result.workload.name} | {result.backend} | run failed"
                f" | {result.error} | | NO |"
            )
        if result.failed_executions:
            lines.append(
                f"| {result.workload.name} | {result.backend} | failed executions"
                f" | {result.failed_executions} | 0 | NO |"
            )
    return "\n".join(lines)


def render_internals(results: Sequence[Result]) -> str:
    """Engine internals per workload (medians): where a regression sits."""
    lines = [
        "| workload | backend | journal commits | mean batch | mean commit ms"
        " | task queue wait ms | runner CPU ms/workflow |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        cells = []
        for figure in INTERNALS:
            summary = result.summary(figure)
            cells.append("" if summary is None else _number(summary.median))
        lines.append(
            f"| {result.workload.name} | {result.backend} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def git_revision(where: Path | None = None) -> str | None:
    """``git describe --always --dirty`` of the checkout holding cloaca, if any."""
    directory = where or Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = done.stdout.strip()
    return revision if done.returncode == 0 and revision else None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts(postgres_version: str | None = None) -> dict[str, Any]:
    """CPU count, Python, platform and the versions of the backends and libraries."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version,
        "cloaca": _version("cloaca"),
        "aiosqlite": _version("aiosqlite"),
        "asyncpg": _version("asyncpg"),
        "anyio": _version("anyio"),
        "msgspec": _version("msgspec"),
    }


def document(
    results: Sequence[Result],
    *,
    machine: dict[str, Any],
    revision: str | None,
    command: Sequence[str],
) -> dict[str, Any]:
    """The ``--json`` document: every figure of every run, summaries and verdicts."""
    entries = []
    for result in results:
        figures = sorted({key for run in result.runs for key in run})
        entries.append(
            {
                "workload": result.workload.name,
                "description": result.workload.description,
                "backend": result.backend,
                "database": result.database,
                "processes": result.processes,
                "config": {
                    "workflow": result.workload.workflow,
                    "executions": result.workload.count,
                    "in_flight": result.workload.in_flight,
                    "max_concurrent_tasks": result.workload.max_concurrent_tasks,
                    "api": result.workload.api,
                    "warmup": result.workload.warmup,
                },
                "runs": result.runs,
                "error": result.error,
                "summary": {
                    figure: msgspec.to_builtins(result.summary(figure))
                    for figure in figures
                },
                "targets": [
                    {
                        "figure": target.figure,
                        "op": target.op,
                        "value": target.value,
                        "median": median,
                        "met": met,
                    }
                    for target, median, met in result.verdicts()
                ],
            }
        )
    return {
        "suite": "cloaca bench",
        "command": list(command),
        "git_revision": revision,
        "machine": machine,
        "results": entries,
    }


def _median(result: Result, figure: str) -> float:
    summary = result.summary(figure)
    return 0.0 if summary is None else summary.median


def plot(results: Sequence[Result], path: Path) -> None:
    """Draw throughput and latency (p50, p99) per workload into ``path``.

    Raises:
        RuntimeError: matplotlib is not installed (``pip install 'cloaca[bench]'``).
    """
    try:
        # Imported by name: an optional extra, without type stubs in the venv.
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib: pip install 'cloaca[bench]'"
        ) from exc
    throughput = [r for r in results if r.summary("workflows_per_s") is not None]
    labels = [f"{r.workload.name}\n{r.backend}" for r in throughput]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, len(labels)), 8))
    top.bar(labels, [_median(r, "workflows_per_s") for r in throughput])
    top.set_ylabel("workflows/s (median)")
    top.set_title("cloaca bench: throughput")
    positions = range(len(labels))
    p50 = [_median(r, "p50_ms") for r in throughput]
    p99 = [_median(r, "p99_ms") for r in throughput]
    bottom.bar([p - 0.2 for p in positions], p50, width=0.4, label="p50")
    bottom.bar([p + 0.2 for p in positions], p99, width=0.4, label="p99")
    bottom.set_xticks(list(positions), labels)
    bottom.set_ylabel("ms, submit to result")
    bottom.set_title("latency per execution")
    bottom.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
