"""The task decorator (API.md 3.4, section 0 items 1 and 6) and its TaskSpec."""

from __future__ import annotations

import inspect
from typing import Any, cast

import pytest

import cloaca
from cloaca import Context, RetryPolicy, WorkflowBuilder, registry
from cloaca.task import GLOBAL_NAMESPACE, TaskSpec


def spec(name: str) -> TaskSpec:
    found = registry.get_task(name)
    assert found is not None, name
    return found


def test_signature_is_keyword_only() -> None:
    params = inspect.signature(cloaca.task).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert list(params)[:10] == [
        "id",
        "dependencies",
        "retry_attempts",
        "retry_backoff",
        "retry_delay_ms",
        "retry_max_delay_ms",
        "retry_condition",
        "retry_jitter",
        "on_success",
        "on_failure",
    ]


def test_bare_decorator_is_type_error() -> None:
    def f(ctx: Context) -> Context:
        return ctx

    with pytest.raises(TypeError):
        cast(Any, cloaca.task)(f)


def test_unknown_keyword_is_type_error() -> None:
    with pytest.raises(TypeError):
        cloaca.task(timeout_seconds=5)  # type: ignore[call-arg]


def test_decorated_function_is_returned_unchanged_and_callable() -> None:
    def original(ctx: Context) -> Context:
        ctx.set("ran", True)
        return ctx

    with WorkflowBuilder("wf_identity"):
        decorated = cloaca.task()(original)
    assert decorated is original
    assert not hasattr(original, "__wrapped__")
    assert decorated(Context()).get("ran") is True


def test_registration_inside_a_block() -> None:
    def on_ok(task_id: str, ctx: Context) -> None:
        pass

    with WorkflowBuilder("wf_reg", tenant="acme") as b:

        @cloaca.task(id="load", dependencies=["extract"], on_success=on_ok)
        def load_fn(ctx: Context) -> Context:
            return ctx

        @cloaca.task()
        def extract(ctx: Context) -> Context:
            return ctx

    assert repr(b) == "WorkflowBuilder(name='wf_reg')"
    s = spec("acme::embedded::wf_reg::load")
    assert s.id == "load"
    assert s.name == "acme::embedded::wf_reg::load"
    assert str(s.namespace) == s.name
    assert s.function is load_fn
    assert s.dependencies == ("acme::embedded::wf_reg::extract",)
    assert s.dependency_ids == ("extract",)
    assert s.on_success is on_ok
    assert s.on_failure is None
    assert s.is_async is False
    assert s.retry_policy == RetryPolicy.default()
    assert spec("acme::embedded::wf_reg::extract").function is extract


def test_function_dependency_uses_dunder_name_not_id() -> None:
    with WorkflowBuilder("wf_fnref"):

        @cloaca.task(id="first_task")
        def first(ctx: Context) -> Context:
            return ctx

        @cloaca.task(id="first")
        def placeholder(ctx: Context) -> Context:
            return ctx

        @cloaca.task(dependencies=[first])
        def second(ctx: Context) -> Context:
            return ctx

    assert spec("public::embedded::wf_fnref::second").dependencies == (
        "public::embedded::wf_fnref::first",
    )


def test_invalid_dependency_item_is_value_error_at_decoration() -> None:
    decorator = cloaca.task(dependencies=["ok", 42])
    with WorkflowBuilder("wf_baddep"):
        with pytest.raises(ValueError) as info:

            @decorator
            def t(ctx: Context) -> Context:
                return ctx

        assert str(info.value) == (
            "Dependency 1 must be either a string or a function object with "
            "__name__ attribute"
        )

        @cloaca.task()
        def fine(ctx: Context) -> Context:
            return ctx

    assert registry.get_task("public::embedded::wf_baddep::t") is None


def test_bare_string_dependencies_is_type_error_at_call() -> None:
    with pytest.raises(TypeError):
        cloaca.task(dependencies="extract")  # type: ignore[arg-type]
    assert cloaca.task(dependencies=("a", "b")) is not None


def test_wrong_argument_types() -> None:
    with pytest.raises(TypeError):
        cloaca.task(id=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cloaca.task(retry_attempts="3")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        cloaca.task(retry_attempts=-1)


def test_retry_keywords_build_the_policy() -> None:
    with WorkflowBuilder("wf_retry"):

        @cloaca.task(
            retry_attempts=5,
            retry_backoff="linear",
            retry_delay_ms=200,
            retry_max_delay_ms=500,
            retry_condition="never",
            retry_jitter=False,
        )
        def flaky(ctx: Context) -> Context:
            return ctx

    p = spec("public::embedded::wf_retry::flaky").retry_policy
    assert p.max_attempts == 5
    assert [p.delay_ms(n) for n in (1, 2, 3)] == [200, 400, 500]
    assert not p.should_retry(1, "x")


def test_unknown_retry_strings_list_valid_choices() -> None:
    with pytest.raises(ValueError) as info:
        cloaca.task(retry_backoff="quadratic")
    assert "'fixed', 'linear', 'exponential'" in str(info.value)
    with pytest.raises(ValueError) as info:
        cloaca.task(retry_condition="some")
    assert "'never', 'transient', 'all'" in str(info.value)


def test_retry_policy_object() -> None:
    policy = RetryPolicy.builder().max_attempts(7).with_jitter(False).build()
    with WorkflowBuilder("wf_policy"):

        @cloaca.task(retry_policy=policy)
        def t(ctx: Context) -> Context:
            return ctx

    assert spec("public::embedded::wf_policy::t").retry_policy is policy
    with pytest.raises(ValueError) as info:
        cloaca.task(retry_policy=policy, retry_attempts=2)
    assert "retry_attempts" in str(info.value)
    assert isinstance(info.value, cloaca.TaskValidationError)
    with pytest.raises(TypeError):
        cloaca.task(retry_policy={"max_attempts": 2})  # type: ignore[arg-type]


def test_async_tasks_are_accepted() -> None:
    with WorkflowBuilder("wf_async"):

        @cloaca.task()
        async def fetch(ctx: Context) -> Context:
            return ctx

    s = spec("public::embedded::wf_async::fetch")
    assert s.is_async is True
    assert s.function is fetch


def test_redecoration_replaces_the_task() -> None:
    with WorkflowBuilder("wf_redef"):

        @cloaca.task(id="t")
        def v1(ctx: Context) -> Context:
            return ctx

    with WorkflowBuilder("wf_redef"):

        @cloaca.task(id="t", retry_attempts=1)
        def v2(ctx: Context) -> Context:
            return ctx

    s = spec("public::embedded::wf_redef::t")
    assert s.function is v2
    assert s.retry_policy.max_attempts == 1


def test_module_level_task_goes_to_the_global_pool() -> None:
    @cloaca.task(id="pooled", dependencies=["other"])
    def pooled(ctx: Context) -> Context:
        return ctx

    s = spec("public::embedded::__global__::pooled")
    assert s.namespace == GLOBAL_NAMESPACE.task_namespace("pooled")
    assert s.dependencies == ("public::embedded::__global__::other",)


def test_helper_called_inside_a_block_targets_the_innermost_block() -> None:
    def define(task_id: str) -> None:
        def body(ctx: Context) -> Context:
            return ctx

        cloaca.task(id=task_id)(body)

    with WorkflowBuilder("outer"):
        define("a")
        with WorkflowBuilder("inner"):
            define("b")
        define("c")

    assert registry.get_task("public::embedded::outer::a") is not None
    assert registry.get_task("public::embedded::inner::b") is not None
    assert registry.get_task("public::embedded::outer::c") is not None
    assert registry.get_task("public::embedded::outer::b") is None


def test_decorating_a_non_callable_is_type_error() -> None:
    with WorkflowBuilder("wf_nc"):
        with pytest.raises(TypeError):
            cloaca.task(id="x")(42)  # type: ignore[type-var]

        @cloaca.task()
        def keep(ctx: Context) -> Context:
            return ctx


def test_callbacks_are_stored_as_given() -> None:
    calls: list[Any] = []
    with WorkflowBuilder("wf_cb"):

        @cloaca.task(on_failure=lambda *a: calls.append(a), on_success="not callable")  # type: ignore[arg-type]
        def t(ctx: Context) -> Context:
            return ctx

    s = spec("public::embedded::wf_cb::t")
    assert cast(object, s.on_success) == "not callable"
    assert s.on_failure is not None
    s.on_failure("t", "err", Context())
    assert calls == [("t", "err", calls[0][2])]
