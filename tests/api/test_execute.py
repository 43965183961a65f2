"""Executing workflows through DefaultRunner: results, contexts, stored states."""

from __future__ import annotations

import threading

import pytest

import cloaca

from .conftest import Database


def define_chain(name: str = "chain") -> None:
    with cloaca.WorkflowBuilder(name) as builder:
        builder.description("three steps")

        @cloaca.task(id="extract")
        def extract(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("extracted", [1, 2, 3])
            return ctx

        @cloaca.task(id="transform", dependencies=["extract"])
        def transform(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("transformed", [v * 10 for v in ctx.get("extracted")])
            return ctx

        @cloaca.task(id="load", dependencies=[transform])
        def load(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("loaded", sum(ctx.get("transformed")))
            return ctx


def test_chain_completes_and_propagates_context(db: Database) -> None:
    define_chain()
    given = cloaca.Context({"n": 1, "text": "héllo ✓"})
    with db.runner() as runner:
        result = runner.execute("chain", given)

    assert result.status == "Completed"
    assert result.error_message is None
    assert result.error is None
    final = result.final_context
    assert final.get("loaded") == 60
    assert final.get("text") == "héllo ✓"
    assert final.to_dict() == {
        "n": 1,
        "text": "héllo ✓",
        "extracted": [1, 2, 3],
        "transformed": [10, 20, 30],
        "loaded": 60,
    }
    # The caller's context is never modified.
    assert given.to_dict() == {"n": 1, "text": "héllo ✓"}
    # final_context is a fresh copy on every access.
    final.set("loaded", -1)
    assert result.final_context.get("loaded") == 60
    assert result.workflow_name == "chain"
    assert result.duration >= 0
    assert result.start_time.endswith("+00:00")
    assert result.end_time is not None
    assert result.end_time.endswith("+00:00")
    assert repr(result) == "PipelineResult(status=Completed, error=None)"
    details = result.task_results
    assert {k: v.status for k, v in details.items()} == {
        "extract": "Completed",
        "transform": "Completed",
        "load": "Completed",
    }
    assert details["load"].attempts == 1

    row = db.execution(result.execution_id)
    assert row.status == "Completed"
    assert row.pipeline_name == "chain"
    assert row.completed_at is not None
    assert row.context_json is not None
    assert '"loaded":60' in row.context_json
    tasks = db.tasks(result.execution_id)
    assert {k: t.status for k, t in tasks.items()} == {
        "extract": "Completed",
        "transform": "Completed",
        "load": "Completed",
    }
    assert tasks["extract"].task_name == "public::embedded::chain::extract"
    assert tasks["transform"].output_context_json is not None
    assert '"transformed":[10,20,30]' in tasks["transform"].output_context_json
    assert all(
        t.started_at is not None and t.completed_at is not None for t in tasks.values()
    )


def test_diamond_merges_outputs_in_task_id_order(db: Database) -> None:
    with cloaca.WorkflowBuilder("diamond"):

        @cloaca.task(id="root")
        def root(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("trail", ["root"])
            return ctx

        @cloaca.task(id="right", dependencies=["root"])
        def right(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("trail", [*ctx.get("trail"), "right"])
            ctx.set("winner", "right")
            ctx.set("nested", {"r": 1})
            return ctx

        @cloaca.task(id="left", dependencies=["root"])
        def left(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("trail", [*ctx.get("trail"), "left"])
            ctx.set("winner", "left")
            ctx.set("nested", {"l": 1})
            return ctx

        @cloaca.task(id="join", dependencies=["left", "right"])
        def join(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("seen", ctx.to_dict())
            return ctx

    with db.runner() as runner:
        result = runner.execute("diamond", cloaca.Context())
    seen = result.final_context.get("seen")
    # Folded in ascending task-id order: left, then right (API.md 4.5, 0.14).
    assert seen["trail"] == ["root", "left", "right"]
    assert seen["winner"] == "right"
    assert seen["nested"] == {"l": 1, "r": 1}


def test_failed_task_fails_the_execution_and_dependents_still_run(db: Database) -> None:
    with cloaca.WorkflowBuilder("failing"):

        @cloaca.task(id="prepare")
        def prepare(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("prepared", True)
            return ctx

        @cloaca.task(id="explode", dependencies=["prepare"], retry_attempts=1)
        def explode(ctx: cloaca.Context) -> cloaca.Context:
            raise ValueError("bad input")

        @cloaca.task(id="cleanup", dependencies=["explode"])
        def cleanup(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("cleanup_saw", ctx.to_dict())
            return ctx

    with db.runner() as runner:
        result = runner.execute("failing", cloaca.Context({"x": 1}))

    assert result.status == "Failed"
    assert result.error_message is not None
    assert "explode" in result.error_message
    assert "Python task execution failed: ValueError: bad input" in result.error_message
    # The failed dependency contributes nothing: cleanup got an empty input.
    assert result.final_context.get("cleanup_saw") == {}
    assert result.task_results["explode"].status == "Failed"
    assert result.task_results["explode"].error == (
        "Python task execution failed: ValueError: bad input"
    )
    row = db.execution(result.execution_id)
    assert row.status == "Failed"
    assert row.error_details is not None
    assert "explode" in row.error_details
    tasks = db.tasks(result.execution_id)
    assert tasks["explode"].status == "Failed"
    assert (
        tasks["explode"].last_error
        == "Python task execution failed: ValueError: bad input"
    )
    assert tasks["explode"].error_details == tasks["explode"].last_error
    assert tasks["cleanup"].status == "Completed"


def test_retries_until_success_and_calls_on_failure_per_attempt(db: Database) -> None:
    calls: list[int] = []
    failures: list[tuple[str, str, dict[str, object]]] = []

    def on_failure(task_id: str, error: str, ctx: cloaca.Context) -> None:
        failures.append((task_id, error, ctx.to_dict()))

    with cloaca.WorkflowBuilder("flaky_flow"):

        @cloaca.task(
            id="flaky",
            retry_attempts=3,
            retry_backoff="fixed",
            retry_delay_ms=1,
            retry_jitter=False,
            on_failure=on_failure,
        )
        def flaky(ctx: cloaca.Context) -> cloaca.Context:
            calls.append(len(calls) + 1)
            ctx.set("mutated_by_failure", True)
            if len(calls) < 3:
                raise ConnectionError(f"transient {len(calls)}")
            ctx.set("attempts", len(calls))
            return ctx

    with db.runner() as runner:
        result = runner.execute("flaky_flow", cloaca.Context({"in": 1}))

    assert result.status == "Completed"
    assert result.final_context.get("attempts") == 3
    assert calls == [1, 2, 3]
    assert [f[0] for f in failures] == ["flaky", "flaky"]
    assert (
        failures[0][1] == "Python task execution failed: ConnectionError: transient 1"
    )
    # on_failure sees the attempt's input, not what the failing attempt changed.
    assert failures[0][2] == {"in": 1}
    assert result.task_results["flaky"].attempts == 3
    task = db.tasks(result.execution_id)["flaky"]
    assert task.status == "Completed"
    assert task.attempt == 3
    assert task.max_attempts == 3


def test_retry_budget_exhausted_fails_with_last_error(db: Database) -> None:
    calls: list[int] = []
    with cloaca.WorkflowBuilder("always_fails"):

        @cloaca.task(id="boom", retry_attempts=2, retry_delay_ms=1, retry_jitter=False)
        def boom(ctx: cloaca.Context) -> cloaca.Context:
            calls.append(1)
            raise RuntimeError(f"boom {len(calls)}")

    with db.runner() as runner:
        result = runner.execute("always_fails", cloaca.Context())
    assert result.status == "Failed"
    assert len(calls) == 2
    assert "Python task execution failed: RuntimeError: boom 2" in (
        result.error_message or ""
    )
    task = db.tasks(result.execution_id)["boom"]
    assert (task.status, task.attempt, task.max_attempts) == ("Failed", 2, 2)


def test_retry_condition_never_and_transient(db: Database) -> None:
    counts = {"never": 0, "transient_value": 0, "transient_conn": 0}
    with cloaca.WorkflowBuilder("conditions"):

        @cloaca.task(
            id="never", retry_attempts=3, retry_condition="never", retry_delay_ms=1
        )
        def never(ctx: cloaca.Context) -> cloaca.Context:
            counts["never"] += 1
            raise ConnectionError("network down")

        @cloaca.task(
            id="transient_value",
            retry_attempts=3,
            retry_condition="transient",
            retry_delay_ms=1,
        )
        def transient_value(ctx: cloaca.Context) -> cloaca.Context:
            counts["transient_value"] += 1
            raise ValueError("bad")

        @cloaca.task(
            id="transient_conn",
            retry_attempts=3,
            retry_condition="transient",
            retry_delay_ms=1,
        )
        def transient_conn(ctx: cloaca.Context) -> cloaca.Context:
            counts["transient_conn"] += 1
            raise ConnectionError("")

    with db.runner() as runner:
        result = runner.execute("conditions", cloaca.Context())
    assert result.status == "Failed"
    assert counts == {"never": 1, "transient_value": 1, "transient_conn": 3}


def test_return_values(db: Database) -> None:
    with cloaca.WorkflowBuilder("returns"):

        @cloaca.task(id="a_none")
        def a_none(ctx: cloaca.Context) -> None:
            ctx.set("discarded", True)  # returning None discards in-place changes

        @cloaca.task(id="b_other", dependencies=["a_none"])
        def b_other(ctx: cloaca.Context) -> cloaca.Context:
            return cloaca.Context({"only": "this", "saw": ctx.to_dict()})

    with db.runner() as runner:
        result = runner.execute("returns", cloaca.Context({"seed": 1}))
    assert result.status == "Completed"
    assert result.final_context.to_dict() == {"only": "this", "saw": {"seed": 1}}


def test_non_context_return_fails_the_task(db: Database) -> None:
    with cloaca.WorkflowBuilder("bad_return"):

        @cloaca.task(id="wrong", retry_attempts=1)
        def wrong(ctx: cloaca.Context) -> object:
            return {"not": "a context"}

    with db.runner() as runner:
        result = runner.execute("bad_return", cloaca.Context())
    assert result.status == "Failed"
    error = result.task_results["wrong"].error or ""
    assert "TypeError" in error
    assert "dict" in error


def test_async_tasks_and_callbacks_are_awaited(db: Database) -> None:
    seen: list[str] = []

    async def on_success(task_id: str, ctx: cloaca.Context) -> None:
        seen.append(f"{task_id}:{ctx.get('value')}")

    with cloaca.WorkflowBuilder("async_flow"):

        @cloaca.task(id="first", on_success=on_success)
        async def first(ctx: cloaca.Context) -> cloaca.Context:
            import anyio

            await anyio.lowlevel.checkpoint()
            ctx.set("value", 1)
            return ctx

        @cloaca.task(id="second", dependencies=["first"], on_success=on_success)
        async def second(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("value", ctx.get("value") + 1)
            return ctx

    with db.runner() as runner:
        result = runner.execute("async_flow", cloaca.Context())
    assert result.status == "Completed"
    assert result.final_context.get("value") == 2
    # Callbacks ran before execute() returned, in dependency order.
    assert seen == ["first:1", "second:2"]


def test_callback_errors_are_reported_on_stderr_and_change_nothing(
    db: Database, capfd: pytest.CaptureFixture[str]
) -> None:
    def bad_success(task_id: str, ctx: cloaca.Context) -> None:
        raise RuntimeError("callback broke")

    def bad_failure(task_id: str, error: str, ctx: cloaca.Context) -> None:
        raise KeyError("nope")

    with cloaca.WorkflowBuilder("callbacks"):

        @cloaca.task(id="ok", on_success=bad_success)
        def ok(ctx: cloaca.Context) -> cloaca.Context:
            return ctx

        @cloaca.task(id="fails", retry_attempts=1, on_failure=bad_failure)
        def fails(ctx: cloaca.Context) -> cloaca.Context:
            raise ValueError("x")

    with db.runner() as runner:
        result = runner.execute("callbacks", cloaca.Context())
    err = capfd.readouterr().err
    assert (
        "[cloaca] on_success callback failed for task 'ok': "
        "RuntimeError: callback broke" in err
    )
    assert (
        "[cloaca] on_failure callback failed for task 'fails': KeyError: 'nope'" in err
    )
    assert result.task_results["ok"].status == "Completed"
    assert result.task_results["fails"].status == "Failed"


def test_on_success_runs_before_dependents_start(db: Database) -> None:
    order: list[str] = []

    def record(task_id: str, ctx: cloaca.Context) -> None:
        order.append(f"callback:{task_id}")

    with cloaca.WorkflowBuilder("ordering"):

        @cloaca.task(id="up", on_success=record)
        def up(ctx: cloaca.Context) -> cloaca.Context:
            order.append("run:up")
            return ctx

        @cloaca.task(id="down", dependencies=["up"])
        def down(ctx: cloaca.Context) -> cloaca.Context:
            order.append("run:down")
            return ctx

    with db.runner() as runner:
        runner.execute("ordering", cloaca.Context())
    assert order == ["run:up", "callback:up", "run:down"]


def test_unknown_workflow_raises_value_error(db: Database) -> None:
    with db.runner() as runner, pytest.raises(ValueError) as info:
        runner.execute("no_such_workflow", cloaca.Context())
    assert str(info.value).startswith("Workflow execution failed:")
    assert "no_such_workflow" in str(info.value)
    assert isinstance(info.value, cloaca.WorkflowExecutionError)


def test_argument_types_are_checked(db: Database) -> None:
    define_chain()
    with db.runner() as runner:
        with pytest.raises(TypeError):
            runner.execute("chain", {"not": "a context"})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            runner.execute(None, cloaca.Context())  # type: ignore[arg-type]


def test_execute_after_shutdown_raises_and_shutdown_is_idempotent(db: Database) -> None:
    define_chain()
    runner = db.runner()
    assert runner.execute("chain", cloaca.Context()).status == "Completed"
    runner.shutdown()
    runner.shutdown()
    with pytest.raises(ValueError, match="Workflow execution failed"):
        runner.execute("chain", cloaca.Context())


def test_many_threads_execute_at_once(db: Database) -> None:
    define_chain()
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    with db.runner() as runner:

        def worker(n: int) -> None:
            try:
                for i in range(5):
                    r = runner.execute("chain", cloaca.Context({"worker": n, "i": i}))
                    with lock:
                        results.append(f"{r.status}:{r.final_context.get('worker')}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert sorted(results) == sorted(
        f"Completed:{n}" for n in range(8) for _ in range(5)
    )


def test_stop_holds_new_attempts_until_start(db: Database) -> None:
    define_chain()
    with db.runner() as runner:
        runner.stop()
        runner.stop()  # idempotent
        outcome: list[cloaca.PipelineResult] = []
        thread = threading.Thread(
            target=lambda: outcome.append(runner.execute("chain", cloaca.Context()))
        )
        thread.start()
        # Nothing may run while stopped: the execution waits for start().
        thread.join(timeout=0.3)
        assert thread.is_alive()
        runner.start()
        runner.start()
        thread.join(timeout=30)
        assert outcome[0].status == "Completed"


def test_repr_and_context_manager_protocol(db: Database) -> None:
    runner = db.runner()
    try:
        assert repr(runner) == "DefaultRunner(thread_separated_async_runtime)"
        assert runner.__enter__() is runner
    finally:
        assert runner.__exit__(None, None, None) is False
