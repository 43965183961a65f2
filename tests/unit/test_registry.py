"""The process-global registries (API.md 4.1) and their test-only snapshot/restore."""

from __future__ import annotations

import threading

import cloaca
from cloaca import Context, TriggerResult, WorkflowBuilder, registry
from cloaca.trigger import TriggerSpec


def body(ctx: Context) -> Context:
    return ctx


def test_snapshot_restore_round_trip() -> None:
    saved = registry.snapshot()
    with WorkflowBuilder("temp"):
        cloaca.task(id="t")(body)
    assert registry.get_workflow("temp") is not None
    assert "temp" in registry.workflow_names()
    registry.restore(saved)
    assert registry.get_workflow("temp") is None
    assert registry.get_task("public::embedded::temp::t") is None


def test_workflow_names_sorted_and_last_registration_wins() -> None:
    for name in ("zeta", "alpha"):
        with WorkflowBuilder(name):
            cloaca.task(id="t")(body)
    names = registry.workflow_names()
    assert names == sorted(names)
    assert {"alpha", "zeta"} <= set(names)
    first = registry.get_workflow("alpha")
    with WorkflowBuilder("alpha"):
        cloaca.task(id="u")(body)
    assert registry.get_workflow("alpha") is not first


def test_same_name_different_tenants_overwrite() -> None:
    with WorkflowBuilder("shared", tenant="a"):
        cloaca.task(id="t")(body)
    with WorkflowBuilder("shared", tenant="b"):
        cloaca.task(id="t")(body)
    wf = registry.get_workflow("shared")
    assert wf is not None
    assert wf.topological_sort() == ["b::embedded::shared::t"]


def test_trigger_listeners_are_called_and_unsubscribe() -> None:
    seen: list[str] = []
    unsubscribe = registry.add_trigger_listener(lambda spec: seen.append(spec.name))

    @cloaca.trigger("wf", name="first")
    def first() -> TriggerResult:
        return TriggerResult.skip()

    unsubscribe()
    unsubscribe()

    @cloaca.trigger("wf", name="second")
    def second() -> TriggerResult:
        return TriggerResult.skip()

    assert seen == ["first"]
    assert [t.name for t in registry.all_triggers()] == ["first", "second"]


def test_a_failing_listener_does_not_break_registration() -> None:
    seen: list[TriggerSpec] = []

    def broken(spec: TriggerSpec) -> None:
        raise RuntimeError("listener bug")

    registry.add_trigger_listener(broken)
    registry.add_trigger_listener(seen.append)

    @cloaca.trigger("wf")
    def poll() -> TriggerResult:
        return TriggerResult.skip()

    assert registry.get_trigger("poll") is not None
    assert [s.name for s in seen] == ["poll"]


def test_concurrent_registration_is_safe() -> None:
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(200):
            cloaca.task(id=f"w{n}_{i}")(body)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in range(4):
        for i in range(200):
            assert (
                registry.get_task(f"public::embedded::__global__::w{n}_{i}") is not None
            )


def test_definition_stack() -> None:
    assert registry.active_namespace() is None
    with WorkflowBuilder("outer"):
        outer = registry.active_namespace()
        assert outer is not None
        assert str(outer) == "public::embedded::outer"
        cloaca.task(id="t")(body)
    assert registry.active_namespace() is None
