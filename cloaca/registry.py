"""The process-global task, workflow and trigger registries (API.md 1.3, 4.1).

Plain "last registration wins" maps shared by every runner in the process, guarded by
one lock so that threads may define and look up concurrently. Tasks are keyed by their
full namespace string (``tenant::package::workflow::task_id``) and indexed per workflow
namespace; workflows by name; triggers by trigger name. The global *definition stack* of
``WorkflowBuilder`` blocks (API.md 3.4 step 1: one stack for the whole process, not one
per thread) lives here too.

Registering a workflow also registers its tasks under their full names, so that the
runtime, which resolves a task through :func:`get_task` at every attempt, finds the
tasks of a workflow assembled with ``add_task`` from module-level tasks (API.md section
0 item 1).

:func:`snapshot` and :func:`restore` exist for tests only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cloaca.namespace import WorkflowContext
    from cloaca.task import TaskSpec
    from cloaca.trigger import TriggerSpec
    from cloaca.workflow import Workflow

__all__ = [
    "active_namespace",
    "add_trigger_listener",
    "all_triggers",
    "get_task",
    "get_trigger",
    "get_workflow",
    "pop_namespace",
    "push_namespace",
    "register_task",
    "register_trigger",
    "register_workflow",
    "restore",
    "snapshot",
    "task_names",
    "tasks_in_namespace",
    "workflow_names",
]

_lock: Final = threading.RLock()
_tasks: dict[str, TaskSpec] = {}
_by_namespace: dict[str, dict[str, TaskSpec]] = {}  # "t::p::w::" -> task id -> spec
_workflows: dict[str, Workflow] = {}
_triggers: dict[str, TriggerSpec] = {}
_trigger_listeners: list[Callable[[TriggerSpec], None]] = []
_definition_stack: list[WorkflowContext] = []


def _register_task_locked(spec: TaskSpec) -> None:
    _tasks[spec.name] = spec
    prefix = spec.name[: len(spec.name) - len(spec.id)]
    _by_namespace.setdefault(prefix, {})[spec.id] = spec


def register_task(spec: TaskSpec) -> None:
    """Register ``spec`` under its full name, replacing an earlier task of that name."""
    with _lock:
        _register_task_locked(spec)


def get_task(name: str) -> TaskSpec | None:
    """Return the task registered under the full namespace string ``name``, if any."""
    with _lock:
        return _tasks.get(name)


def task_names() -> list[str]:
    """Return the full names of every registered task, sorted."""
    with _lock:
        return sorted(_tasks)


def tasks_in_namespace(workflow: WorkflowContext) -> dict[str, TaskSpec]:
    """Return a copy of the tasks registered in ``workflow``'s namespace, by task id."""
    with _lock:
        return dict(_by_namespace.get(workflow.prefix, {}))


def register_workflow(name: str, workflow: Workflow) -> None:
    """Register ``workflow`` under ``name`` and its tasks under their full names."""
    with _lock:
        for spec in workflow._tasks.values():
            _register_task_locked(spec)
        _workflows[name] = workflow


def get_workflow(name: str) -> Workflow | None:
    """Return the workflow registered under ``name``, if any."""
    with _lock:
        return _workflows.get(name)


def workflow_names() -> list[str]:
    """Return the registered workflow names, sorted."""
    with _lock:
        return sorted(_workflows)


def register_trigger(spec: TriggerSpec) -> None:
    """Register ``spec`` under its name (replacing an earlier one) and notify listeners.

    Listeners run on the registering thread, after the lock is released; one that raises
    is logged and does not stop the others or the registration.
    """
    with _lock:
        _triggers[spec.name] = spec
        listeners = list(_trigger_listeners)
    for listener in listeners:
        try:
            listener(spec)
        except Exception:  # a runner's bookkeeping must not break a user's decorator
            # Imported here: structlog costs ~40 ms, too much for ``import cloaca``.
            from cloaca.logging import get_logger

            get_logger(__name__).exception("trigger.listener.failed", trigger=spec.name)


def get_trigger(name: str) -> TriggerSpec | None:
    """Return the trigger registered under ``name``, if any."""
    with _lock:
        return _triggers.get(name)


def all_triggers() -> list[TriggerSpec]:
    """Return every registered trigger, sorted by name."""
    with _lock:
        return [_triggers[name] for name in sorted(_triggers)]


def add_trigger_listener(fn: Callable[[TriggerSpec], None]) -> Callable[[], None]:
    """Call ``fn(spec)`` on every later trigger registration.

    Returns:
        A function that unsubscribes ``fn`` (idempotent).
    """
    with _lock:
        _trigger_listeners.append(fn)

    def unsubscribe() -> None:
        with _lock:
            if fn in _trigger_listeners:
                _trigger_listeners.remove(fn)

    return unsubscribe


def push_namespace(workflow: WorkflowContext) -> None:
    """Make ``workflow`` the innermost active definition namespace (``__enter__``)."""
    with _lock:
        _definition_stack.append(workflow)


def pop_namespace() -> WorkflowContext | None:
    """Remove and return the innermost active definition namespace (``__exit__``)."""
    with _lock:
        return _definition_stack.pop() if _definition_stack else None


def active_namespace() -> WorkflowContext | None:
    """Return the innermost active definition namespace, ``None`` outside any block."""
    with _lock:
        return _definition_stack[-1] if _definition_stack else None


class _Snapshot:
    """Copies of every registry, as :func:`snapshot` took them."""

    __slots__ = ("by_namespace", "listeners", "stack", "tasks", "triggers", "workflows")

    def __init__(self) -> None:
        self.tasks = dict(_tasks)
        self.by_namespace = {
            prefix: dict(tasks) for prefix, tasks in _by_namespace.items()
        }
        self.workflows = dict(_workflows)
        self.triggers = dict(_triggers)
        self.listeners = list(_trigger_listeners)
        self.stack = list(_definition_stack)


def snapshot() -> object:
    """Capture every registry and the definition stack (tests only)."""
    with _lock:
        return _Snapshot()


def restore(snapshot: object) -> None:
    """Put every registry back as :func:`snapshot` captured it (tests only)."""
    if not isinstance(snapshot, _Snapshot):
        raise TypeError("restore() needs an object returned by snapshot()")
    with _lock:
        _tasks.clear()
        _tasks.update(snapshot.tasks)
        _by_namespace.clear()
        _by_namespace.update({p: dict(t) for p, t in snapshot.by_namespace.items()})
        _workflows.clear()
        _workflows.update(snapshot.workflows)
        _triggers.clear()
        _triggers.update(snapshot.triggers)
        _trigger_listeners[:] = snapshot.listeners
        _definition_stack[:] = snapshot.stack
