"""The final context of API.md 4.6 when completions share one instant.

Stored times have millisecond resolution, so a dependent can complete "at the
same time" as the task it depends on, and independent tasks often do. The
final context must not depend on the order the results were handled in: an
execution rebuilt from the database (rows in any order) has to report the
context the live execution stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from cloaca.runtime import state as st

AT = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


def execution(
    order: list[str], dependencies: dict[str, tuple[str, ...]]
) -> st.ExecutionState:
    return st.ExecutionState(
        execution_id=uuid.uuid4(),
        workflow_name="w",
        version="v",
        input_json="{}",
        started_at=AT,
        tasks=[
            st.TaskState(
                name=name,
                row_id=uuid.uuid4(),
                dependencies=dependencies.get(name, ()),
                max_attempts=1,
            )
            for name in order
        ],
    )


def final_after(order: list[str], dependencies: dict[str, tuple[str, ...]]) -> str:
    """Complete every task at the same instant, in ``order``; the final context."""
    state = execution(order, dependencies)
    for name in order:
        state.mark_completed(state.tasks[name], f'{{"by": "{name}"}}', None, AT)
    return state.final_context_json()


def test_a_dependent_completing_in_the_same_instant_wins() -> None:
    # "load" sorts before "extract": the graph, not the name, decides.
    chain = {"transform": ("extract",), "load": ("transform",)}
    for order in (["extract", "transform", "load"], ["load", "transform", "extract"]):
        assert final_after(order, chain) == '{"by": "load"}'


def test_independent_tasks_tied_resolve_the_same_in_any_order() -> None:
    fan = {"left": ("root",), "right": ("root",)}
    results = {
        final_after(order, fan)
        for order in (["root", "left", "right"], ["root", "right", "left"])
    }
    assert results == {'{"by": "right"}'}


def test_a_later_completion_wins_whatever_the_graph() -> None:
    state = execution(["a", "b"], {"b": ("a",)})
    later = AT.replace(microsecond=1000)
    state.mark_completed(state.tasks["b"], '{"by": "b"}', None, AT)
    state.mark_completed(state.tasks["a"], '{"by": "a"}', None, later)
    assert state.final_context_json() == '{"by": "a"}'
