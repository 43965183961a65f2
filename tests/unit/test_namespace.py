"""TaskNamespace and WorkflowContext (API.md 3.13-3.14)."""

from __future__ import annotations

import pytest

import cloaca
from cloaca import TaskNamespace, WorkflowContext


def test_parts_str_and_repr() -> None:
    ns = TaskNamespace("public", "embedded", "etl", "load")
    assert (ns.tenant_id, ns.package_name, ns.workflow_id, ns.task_id) == (
        "public",
        "embedded",
        "etl",
        "load",
    )
    assert str(ns) == "public::embedded::etl::load"
    assert repr(ns) == "TaskNamespace('public', 'embedded', 'etl', 'load')"


def test_from_string_round_trip_and_empty_parts() -> None:
    ns = TaskNamespace.from_string("a::b::c::d")
    assert ns == TaskNamespace("a", "b", "c", "d")
    empty = TaskNamespace.from_string("::::::")
    assert str(empty) == "::::::"


@pytest.mark.parametrize("text", ["a::b::c", "a::b::c::d::e", "", "abc"])
def test_from_string_needs_four_parts(text: str) -> None:
    with pytest.raises(ValueError) as info:
        TaskNamespace.from_string(text)
    assert str(info.value) == (
        f"Invalid namespace format: Invalid namespace format '{text}'. "
        "Expected 'tenant::package::workflow::task'"
    )
    assert isinstance(info.value, cloaca.CloacaError)


def test_parent_child_sibling() -> None:
    a = TaskNamespace("t", "p", "w", "a")
    b = TaskNamespace("t", "p", "w", "b")
    parent = a.parent()
    assert parent == TaskNamespace("t", "p", "w", "")
    assert str(parent).endswith("::")
    assert a.is_child_of(parent)
    assert not parent.is_child_of(parent)
    assert not a.is_child_of(b)
    assert a.is_sibling_of(b)
    assert not a.is_sibling_of(a)
    assert not a.is_sibling_of(parent)
    assert not a.is_sibling_of(TaskNamespace("t", "p", "other", "b"))


def test_equality_and_hash() -> None:
    a = TaskNamespace("t", "p", "w", "x")
    same = TaskNamespace.from_string("t::p::w::x")
    assert a == same
    assert hash(a) == hash(same)
    assert len({a, same}) == 1
    assert a != "t::p::w::x"
    assert a != TaskNamespace("t", "p", "w", "y")


def test_read_only_properties() -> None:
    ns = TaskNamespace("t", "p", "w", "x")
    with pytest.raises(AttributeError):
        ns.task_id = "y"  # type: ignore[misc]


def test_non_str_parts_are_type_errors() -> None:
    with pytest.raises(TypeError):
        TaskNamespace("t", "p", "w", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WorkflowContext("t", 1, "w")  # type: ignore[arg-type]


def test_workflow_context() -> None:
    wc = WorkflowContext("public", "embedded", "etl")
    assert (wc.tenant_id, wc.package_name, wc.workflow_id) == (
        "public",
        "embedded",
        "etl",
    )
    assert str(wc) == "public::embedded::etl"
    assert repr(wc) == "WorkflowContext('public', 'embedded', 'etl')"
    assert wc.task_namespace("load") == TaskNamespace(
        "public", "embedded", "etl", "load"
    )
    assert wc.resolve_dependency("load") == wc.task_namespace("load")
    assert wc.workflow_namespace() == TaskNamespace("public", "embedded", "etl", "")
    assert wc.contains_namespace(TaskNamespace("public", "embedded", "etl", "x"))
    assert not wc.contains_namespace(TaskNamespace("public", "embedded", "other", "x"))
    assert wc == WorkflowContext("public", "embedded", "etl")
    assert wc != WorkflowContext("acme", "embedded", "etl")
    assert wc != "public::embedded::etl"
