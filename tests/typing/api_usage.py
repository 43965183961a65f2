"""Typed usage of cloaca's public API, checked by ``mypy --strict`` (never executed).

Each function reads like user code written from API.md; a signature change that breaks
such code makes mypy fail here. The ``reveal``-free style follows structlog's
``tests/typing/api.py``: an assignment with an annotation pins each return type.
"""

from __future__ import annotations

import random
from typing import Any

import cloaca


def define_in_a_block() -> cloaca.Workflow | None:
    with cloaca.WorkflowBuilder("typed", tenant="acme") as builder:
        builder.description("typed usage")
        builder.tag("team", "data")

        @cloaca.task(retry_attempts=3, retry_backoff="fixed", retry_delay_ms=250)
        def first(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("n", 1)
            return ctx

        def announce(task_id: str, ctx: cloaca.Context) -> None:
            print(task_id, ctx.get("n"))

        def complain(task_id: str, error: str, ctx: cloaca.Context) -> None:
            print(task_id, error, len(ctx))

        @cloaca.task(
            id="second",
            dependencies=[first, "first"],
            on_success=announce,
            on_failure=complain,
        )
        async def second(ctx: cloaca.Context) -> cloaca.Context | None:
            return None

        same: cloaca.Context = first(cloaca.Context({"seed": 0}))
        assert same.get("n") == 1
        built: cloaca.Workflow = builder.build()
        del built
    return None


def module_level_tasks() -> None:
    policy: cloaca.RetryPolicy = (
        cloaca.RetryPolicy.builder()
        .max_attempts(5)
        .initial_delay(0.5)
        .max_delay(30.0)
        .backoff_strategy(cloaca.BackoffStrategy.exponential(2.0))
        .retry_condition(cloaca.RetryCondition.error_pattern(["timeout"]))
        .with_jitter(False)
        .build()
    )

    @cloaca.task(id="extract", retry_policy=policy)
    def extract(ctx: cloaca.Context) -> cloaca.Context:
        return ctx

    def make() -> cloaca.Workflow:
        builder = cloaca.WorkflowBuilder("etl")
        builder.add_task("extract")
        builder.add_task(extract)
        return builder.build()

    cloaca.register_workflow_constructor("etl", make)


def inspect_workflow(wf: cloaca.Workflow) -> list[str]:
    name: str = wf.name
    description: str = wf.description
    version: str = wf.version
    levels: list[list[str]] = wf.get_execution_levels()
    roots: list[str] = wf.get_roots()
    leaves: list[str] = wf.get_leaves()
    wf.validate()
    del name, description, version, levels, roots, leaves
    return wf.topological_sort()


def use_context() -> str:
    ctx = cloaca.Context({"a": 1, "items": [1, 2]})
    ctx["b"] = {"nested": True}
    ctx.insert("c", None)
    ctx.update("a", 2)
    value: Any = ctx.get("missing", "default")
    removed: Any | None = ctx.remove("c")
    as_dict: dict[str, Any] = ctx.to_dict()
    ctx.update_from_dict({"d": 4})
    present: bool = "a" in ctx
    size: int = len(ctx)
    del ctx["d"]
    again: cloaca.Context = cloaca.Context.from_json(ctx.to_json())
    del value, removed, as_dict, present, size
    return repr(again)


def use_namespaces() -> bool:
    ns = cloaca.TaskNamespace("public", "embedded", "etl", "load")
    parsed: cloaca.TaskNamespace = cloaca.TaskNamespace.from_string(str(ns))
    wc = cloaca.WorkflowContext("public", "embedded", "etl")
    member: cloaca.TaskNamespace = wc.task_namespace("load")
    return ns.is_child_of(parsed.parent()) and wc.contains_namespace(member)


def use_retry() -> float:
    policy = cloaca.RetryPolicy.default()
    retry: bool = policy.should_retry(1, "Python task execution failed: TimeoutError: ")
    attempts: int = policy.max_attempts
    jitter: bool = policy.with_jitter
    del retry, attempts, jitter
    linear: cloaca.BackoffStrategy = cloaca.BackoffStrategy.linear(1.5)
    never: cloaca.RetryCondition = cloaca.RetryCondition.never()
    del linear, never
    return policy.calculate_delay(2) + policy.delay(1, random.Random(1))


def use_config() -> dict[str, Any]:
    cfg = cloaca.DefaultRunnerConfig(
        max_concurrent_tasks=8, enable_cron_scheduling=False
    )
    cfg.pipeline_timeout_seconds = None
    cfg.task_timeout_seconds = 60
    timeout: int | None = cfg.pipeline_timeout_seconds
    default: cloaca.DefaultRunnerConfig = cloaca.DefaultRunnerConfig.default()
    del timeout, default
    return cfg.to_dict()


def use_triggers() -> None:
    @cloaca.trigger("etl", name="watch", poll_interval="100ms", allow_concurrent=False)
    def watch() -> cloaca.TriggerResult:
        if random.random() < 0.5:
            return cloaca.TriggerResult.skip()
        return cloaca.TriggerResult.fire(cloaca.Context({"file": "a.csv"}))

    result = watch()
    fired: bool = result.is_fire_result()
    skipped: bool = result.is_skip_result()
    del fired, skipped


def run(url: str) -> str | None:
    error: str | None = None
    with cloaca.DefaultRunner(url) as runner:
        result: cloaca.PipelineResult = runner.execute("etl", cloaca.Context())
        status: str = result.status
        final: cloaca.Context = result.final_context
        error = result.error_message
        del status, final
    return error


def catch_errors() -> str:
    try:
        cloaca.Context().update("missing", 1)
    except cloaca.ContextError as exc:
        return str(exc)
    except (cloaca.WorkflowValidationError, cloaca.TaskValidationError) as exc:
        return str(exc)
    return cloaca.hello_world() + cloaca.HelloClass().get_message()
