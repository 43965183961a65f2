"""WorkflowBuilder, Workflow, register_workflow_constructor (API.md 3.5-3.7, 4.11)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any, cast

import pytest

import cloaca
from cloaca import Context, Workflow, WorkflowBuilder, registry
from cloaca.workflow import graph_of

Task = Callable[[Context], Context]


def body(ctx: Context) -> Context:
    return ctx


def define(task_id: str, *deps: str) -> None:
    cloaca.task(id=task_id, dependencies=list(deps))(body)


def diamond(name: str = "diamond") -> Workflow:
    with WorkflowBuilder(name):
        define("root")
        define("left", "root")
        define("right", "root")
        define("join", "left", "right")
    wf = registry.get_workflow(name)
    assert wf is not None
    return wf


def ns(name: str, task_id: str) -> str:
    return f"public::embedded::{name}::{task_id}"


def test_with_block_registers_the_workflow() -> None:
    wf = diamond()
    assert wf.name == "diamond"
    assert wf.description == ""
    assert repr(wf) == "Workflow(name='diamond', tasks=4)"
    order = wf.topological_sort()
    assert set(order) == {ns("diamond", t) for t in ("root", "left", "right", "join")}
    pos = {n: i for i, n in enumerate(order)}
    assert pos[ns("diamond", "root")] < pos[ns("diamond", "left")]
    assert pos[ns("diamond", "left")] < pos[ns("diamond", "join")]
    assert pos[ns("diamond", "right")] < pos[ns("diamond", "join")]
    levels = wf.get_execution_levels()
    assert [sorted(level) for level in levels] == [
        [ns("diamond", "root")],
        [ns("diamond", "left"), ns("diamond", "right")],
        [ns("diamond", "join")],
    ]
    assert wf.get_roots() == [ns("diamond", "root")]
    assert wf.get_leaves() == [ns("diamond", "join")]
    wf.validate()


def test_graph_of_for_the_runtime() -> None:
    wf = diamond()
    g = graph_of(wf)
    assert g is graph_of(wf)
    assert g.name == "diamond"
    assert g.version == wf.version
    assert g.tenant == "public"
    assert g.task_names == tuple(wf.topological_sort())
    assert g.dependencies[ns("diamond", "join")] == (
        ns("diamond", "left"),
        ns("diamond", "right"),
    )
    assert g.dependents[ns("diamond", "root")] == (
        ns("diamond", "left"),
        ns("diamond", "right"),
    )
    assert g.dependents[ns("diamond", "join")] == ()
    assert g.roots == (ns("diamond", "root"),)


def test_empty_block_is_a_validation_error() -> None:
    with pytest.raises(ValueError) as info, WorkflowBuilder("empty"):
        pass
    assert str(info.value) == "Workflow validation failed: Workflow cannot be empty"
    assert isinstance(info.value, cloaca.WorkflowValidationError)
    assert registry.get_workflow("empty") is None


def test_missing_dependency_message() -> None:
    def block() -> None:
        with WorkflowBuilder("missing"):
            define("a", "ghost")

    with pytest.raises(ValueError) as info:
        block()
    assert str(info.value) == (
        "Workflow validation failed: Missing dependency: task "
        "'public::embedded::missing::a' depends on 'public::embedded::missing::ghost' "
        "which is not registered"
    )


def test_cycle_message_names_the_tasks_on_the_cycle() -> None:
    def block() -> None:
        with WorkflowBuilder("cyc"):
            define("start")
            define("a", "c", "start")
            define("b", "a")
            define("c", "b")

    with pytest.raises(ValueError) as info:
        block()
    assert str(info.value) == (
        "Workflow validation failed: Circular dependency detected: "
        '["public::embedded::cyc::a", "public::embedded::cyc::c", '
        '"public::embedded::cyc::b"]'
    )


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(ValueError) as info, WorkflowBuilder("selfdep"):
        define("me", "me")
    assert "Circular dependency detected:" in str(info.value)
    assert "public::embedded::selfdep::me" in str(info.value)


def test_missing_dependency_is_reported_before_cycles() -> None:
    def block() -> None:
        with WorkflowBuilder("both"):
            define("a", "b")
            define("b", "a", "ghost")

    with pytest.raises(ValueError) as info:
        block()
    assert "Missing dependency" in str(info.value)


def test_block_exception_propagates_after_registration() -> None:
    def block() -> None:
        with WorkflowBuilder("raised"):
            define("t")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        block()
    assert registry.get_workflow("raised") is not None


def test_validation_error_chains_onto_the_block_exception() -> None:
    def block() -> None:
        with WorkflowBuilder("chained"):
            define("a", "ghost")
            raise KeyError("inner")

    with pytest.raises(ValueError) as info:
        block()
    assert isinstance(info.value.__context__, KeyError)


def test_workflow_id_names_the_registered_workflow() -> None:
    with WorkflowBuilder("display", tenant="acme", package="pkg", workflow="wid") as b:
        b.description("described")
        b.tag("team", "data")
        define("t")
    assert registry.get_workflow("display") is None
    wf = registry.get_workflow("wid")
    assert wf is not None
    assert wf.name == "wid"
    assert wf.description == "described"
    assert wf.topological_sort() == ["acme::pkg::wid::t"]


def test_redefinition_accumulates_tasks_and_replaces_the_workflow() -> None:
    with WorkflowBuilder("acc"):
        define("a")
    first = registry.get_workflow("acc")
    with WorkflowBuilder("acc"):
        define("b")
    second = registry.get_workflow("acc")
    assert first is not None
    assert second is not None
    assert second is not first
    assert sorted(second.topological_sort()) == [ns("acc", "a"), ns("acc", "b")]


def test_builder_methods_return_none() -> None:
    b = cast(Any, WorkflowBuilder("chain"))
    assert b.description("d") is None
    assert b.tag("k", "v") is None
    assert b.add_task is not None


def test_builder_rejects_none_name() -> None:
    with pytest.raises(TypeError):
        WorkflowBuilder(None)  # type: ignore[arg-type]
    assert repr(WorkflowBuilder("")) == "WorkflowBuilder(name='')"


def test_workflow_is_not_constructible() -> None:
    with pytest.raises(TypeError):
        Workflow()


def test_build_uses_only_added_tasks() -> None:
    with WorkflowBuilder("imp") as b:
        define("a")
        define("b", "a")
        define("unused")
        b.add_task("a")
        b.add_task("b")
        built = b.build()
    assert sorted(built.topological_sort()) == [ns("imp", "a"), ns("imp", "b")]
    assert built.name == "imp"
    registered = registry.get_workflow("imp")
    assert registered is not None
    assert len(registered.topological_sort()) == 3


def test_build_errors_are_prefixed() -> None:
    with WorkflowBuilder("builderr") as b:
        define("a", "b")
        define("b")
        with pytest.raises(ValueError) as info:
            b.build()
        assert str(info.value) == "Failed to build workflow: Workflow cannot be empty"
        b.add_task("a")
        with pytest.raises(ValueError) as info:
            b.build()
        assert str(info.value).startswith(
            "Failed to build workflow: Missing dependency:"
        )


def test_add_task_errors() -> None:
    with WorkflowBuilder("adderr") as b:
        define("a")
        with pytest.raises(ValueError) as info:
            b.add_task("nope")
        assert str(info.value) == (
            "Task 'nope' not found in registry. Make sure it was decorated with @task."
        )
        with pytest.raises(ValueError) as info:
            b.add_task(42)  # type: ignore[arg-type]
        assert str(info.value) == (
            "Task must be either a string task ID or a function object with __name__ "
            "attribute"
        )
        b.add_task("a")
        with pytest.raises(ValueError) as info:
            b.add_task("a")
        assert str(info.value).startswith("Failed to add task: Duplicate task:")


def test_add_task_by_function_uses_its_name() -> None:
    with WorkflowBuilder("byfn") as b:

        @cloaca.task()
        def step(ctx: Context) -> Context:
            return ctx

        b.add_task(step)
        assert b.build().topological_sort() == [ns("byfn", "step")]


def test_module_level_tasks_with_constructor() -> None:
    @cloaca.task(id="extract")
    def extract(ctx: Context) -> Context:
        return ctx

    @cloaca.task(id="load", dependencies=[extract])
    def load(ctx: Context) -> Context:
        return ctx

    def make() -> Workflow:
        builder = WorkflowBuilder("etl")
        builder.description("module-level tasks")
        builder.add_task("extract")
        builder.add_task(load)
        return builder.build()

    assert registry.get_workflow("etl") is None
    cloaca.register_workflow_constructor("etl", make)
    wf = registry.get_workflow("etl")
    assert wf is not None
    assert wf.topological_sort() == [ns("etl", "extract"), ns("etl", "load")]
    assert wf.description == "module-level tasks"
    # the runtime resolves tasks by full name: the rebased specs are registered
    spec = registry.get_task(ns("etl", "load"))
    assert spec is not None
    assert spec.function is load
    assert spec.dependencies == (ns("etl", "extract"),)


def test_module_level_tasks_added_inside_a_block() -> None:
    @cloaca.task(id="pool_a")
    def pool_a(ctx: Context) -> Context:
        return ctx

    with WorkflowBuilder("mixed") as b:
        b.add_task("pool_a")

        @cloaca.task(dependencies=["pool_a"])
        def local(ctx: Context) -> Context:
            return ctx

    wf = registry.get_workflow("mixed")
    assert wf is not None
    assert wf.topological_sort() == [ns("mixed", "pool_a"), ns("mixed", "local")]
    assert registry.get_task(ns("mixed", "pool_a")) is not None


def test_builder_namespace_wins_over_the_pool() -> None:
    @cloaca.task(id="dup")
    def pooled(ctx: Context) -> Context:
        return ctx

    with WorkflowBuilder("prefer") as b:

        @cloaca.task(id="dup")
        def local(ctx: Context) -> Context:
            return ctx

        b.add_task("dup")
    spec = registry.get_task(ns("prefer", "dup"))
    assert spec is not None
    assert spec.function is local


def test_register_workflow_constructor_errors() -> None:
    def boom() -> Workflow:
        raise RuntimeError("boom")

    with pytest.raises(ValueError) as info:
        cloaca.register_workflow_constructor("x", boom)
    assert str(info.value) == "Failed to call workflow constructor: RuntimeError: boom"
    with pytest.raises(ValueError) as info:
        cloaca.register_workflow_constructor("x", 5)  # type: ignore[arg-type]
    assert str(info.value) == (
        "Failed to call workflow constructor: TypeError: 'int' object is not callable"
    )
    with pytest.raises(ValueError) as info:
        cloaca.register_workflow_constructor("x", lambda: "nope")  # type: ignore[arg-type,return-value]
    assert str(info.value).startswith("Failed to extract workflow from constructor:")
    assert "'str' object cannot be converted to 'Workflow'" in str(info.value)
    assert registry.get_workflow("x") is None


def test_constructor_is_called_once_and_name_may_differ() -> None:
    calls: list[int] = []
    with WorkflowBuilder("orig") as b:
        define("t")
        b.add_task("t")
        built = b.build()

    def make() -> Workflow:
        calls.append(1)
        return built

    cloaca.register_workflow_constructor("alias", make)
    assert calls == [1]
    assert registry.get_workflow("alias") is built


def test_version_is_structural() -> None:
    def build(
        name: str = "v",
        desc: str | None = None,
        tags: dict[str, str] | None = None,
        tenant: str | None = None,
        extra_dep: bool = False,
    ) -> str:
        with WorkflowBuilder(name, tenant=tenant) as b:
            if desc is not None:
                b.description(desc)
            for k, v in (tags or {}).items():
                b.tag(k, v)
            define("a")
            define("b", "a")
            if extra_dep:
                define("c", "a", "b")
            b.add_task("a")
            b.add_task("b")
            if extra_dep:
                b.add_task("c")
            return b.build().version

    base = build()
    assert len(base) == 16
    assert int(base, 16) >= 0
    assert base == base.lower()
    assert build() == base
    assert build(desc="") != base
    assert build(desc="x") != build(desc="")
    assert build(tags={"k": "v"}) != base
    assert build(tenant="acme") != base
    assert build(name="other") != base
    assert build(extra_dep=True) != base


def test_version_ignores_bodies_retries_and_callbacks() -> None:
    def make(variant: int) -> str:
        with WorkflowBuilder("bodies") as b:

            @cloaca.task(
                id="t", retry_attempts=variant, on_success=print if variant else None
            )
            def t(ctx: Context) -> Context:
                ctx.set("v", variant)
                return ctx

            b.add_task("t")
            return b.build().version

    assert make(0) == make(5)


def test_version_is_the_same_across_processes() -> None:
    script = textwrap.dedent(
        """
        import cloaca
        with cloaca.WorkflowBuilder("xproc") as b:
            cloaca.task(id="a")(lambda ctx: ctx)
            cloaca.task(id="b", dependencies=["a"])(lambda ctx: ctx)
        print(cloaca.registry.get_workflow("xproc").version)
        """
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", script],
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""} | _pythonpath(),
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    with WorkflowBuilder("xproc"):
        define("a")
        define("b", "a")
    wf = registry.get_workflow("xproc")
    assert wf is not None
    assert outs == {wf.version}


def _pythonpath() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}


def test_large_chain_does_not_hit_the_recursion_limit() -> None:
    with WorkflowBuilder("chain2000"):
        define("t0")
        for i in range(1, 2000):
            define(f"t{i}", f"t{i - 1}")
    wf = registry.get_workflow("chain2000")
    assert wf is not None
    assert len(wf.get_execution_levels()) == 2000
    assert wf.topological_sort()[0] == ns("chain2000", "t0")
