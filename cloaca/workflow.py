"""Workflows: the builder, the validated DAG and constructors (API.md 3.5-3.7, 4.11).

A :class:`Workflow` is a validated, immutable DAG of :class:`~cloaca.task.TaskSpec`
keyed by full namespace string. Validation reports, in this order, an empty workflow, a
missing dependency and a cycle (naming the tasks on it). The version is a BLAKE2b-64
digest of the structure only (task namespaces, declared dependencies, name, tenant,
description, tags), so it is the same in every process and ignores function bodies,
retry settings and callbacks.

A builder assembles a workflow in two ways (API.md 3.5 and section 0 item 1): leaving a
``with`` block registers every task decorated under the builder's namespace (plus any
task added with :meth:`WorkflowBuilder.add_task`); :meth:`WorkflowBuilder.build` returns
only the added tasks, for ``register_workflow_constructor``. Registering a workflow also
registers its tasks under their full names (registry.py), so module-level tasks added to
a builder are found by the runtime.

:func:`graph_of` gives the runtime the precomputed :class:`WorkflowGraph` of a workflow.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Final, Literal

import msgspec

from cloaca import registry, texts
from cloaca.errors import (
    TaskValidationError,
    WorkflowTypeError,
    WorkflowValidationError,
)
from cloaca.namespace import WorkflowContext
from cloaca.task import GLOBAL_NAMESPACE, TaskSpec

__all__ = [
    "Workflow",
    "WorkflowBuilder",
    "WorkflowGraph",
    "graph_of",
    "register_workflow_constructor",
]

_EMPTY: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({})


class WorkflowGraph(msgspec.Struct, frozen=True, kw_only=True):
    """The precomputed shape of a workflow, for the runtime.

    Attributes:
        name: Workflow name.
        version: 16 lowercase hex digits (API.md 4.11).
        tenant: Tenant label of the workflow's namespace.
        description: Description, ``""`` when none was set.
        task_names: Full task names in a deterministic topological order.
        dependencies: Full name -> its dependencies, ascending, without duplicates.
        dependents: Full name -> the tasks depending on it, ascending.
        roots: Tasks without dependencies, ascending.
    """

    name: str
    version: str
    tenant: str
    description: str
    task_names: tuple[str, ...]
    dependencies: Mapping[str, tuple[str, ...]] = _EMPTY
    dependents: Mapping[str, tuple[str, ...]] = _EMPTY
    roots: tuple[str, ...] = ()


class _Invalid(Exception):
    """A validation reason, before it gets its prefix."""


def _format_cycle(cycle: list[str]) -> str:
    # The reference prints Rust's Debug form of a list of strings: ["a", "b"].
    quoted = ('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in cycle)
    return "[" + ", ".join(quoted) + "]"


def _find_cycle(deps: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """Return one cycle (each task once, smallest name first) or ``None``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(deps):
        if root in state:
            continue
        path = [root]
        iters = [iter(deps[root])]
        state[root] = 1
        while iters:
            dep = next(iters[-1], None)
            if dep is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(dep) == 1:
                cycle = path[path.index(dep) :]
                start = cycle.index(min(cycle))
                return cycle[start:] + cycle[:start]
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                iters.append(iter(deps[dep]))
    return None


def _analyse(
    tasks: Mapping[str, TaskSpec],
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Validate ``tasks``; return their sorted dependencies and a topological order."""
    if not tasks:
        raise _Invalid(texts.WORKFLOW_EMPTY)
    deps: dict[str, tuple[str, ...]] = {}
    for name in sorted(tasks):
        for dep in tasks[name].dependencies:
            if dep not in tasks:
                raise _Invalid(
                    texts.MISSING_DEPENDENCY.format(task=name, dependency=dep)
                )
        deps[name] = tuple(sorted(set(tasks[name].dependencies)))
    cycle = _find_cycle(deps)
    if cycle is not None:
        raise _Invalid(texts.CIRCULAR_DEPENDENCY.format(cycle=_format_cycle(cycle)))
    # Kahn's algorithm taking the smallest ready name first: a deterministic order.
    waiting = {name: len(d) for name, d in deps.items()}
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, d in deps.items():
        for dep in d:
            dependents[dep].append(name)
    ready = [name for name, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for child in dependents[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    return deps, order


def _version(
    tasks: Mapping[str, TaskSpec],
    deps: Mapping[str, tuple[str, ...]],
    name: str,
    tenant: str,
    description: str | None,
    tags: Mapping[str, str],
) -> str:
    names = sorted(tasks)
    material = [
        [[n, list(deps[n])] for n in names],
        [[tasks[n].id, list(tasks[n].dependency_ids)] for n in names],
        [name, tenant, description, sorted(tags.items())],
    ]
    digest = hashlib.blake2b(msgspec.json.encode(material), digest_size=8)
    return digest.hexdigest()


class Workflow:
    """A validated, immutable DAG of tasks (API.md 3.6); not user-constructible.

    Obtain one from :meth:`WorkflowBuilder.build` or by leaving a ``with
    WorkflowBuilder`` block (then ``registry`` holds it).
    """

    __slots__ = (
        "_description",
        "_graph",
        "_levels",
        "_name",
        "_tags",
        "_tasks",
        "_tenant",
    )

    _name: str
    _tenant: str
    _description: str | None
    _tags: dict[str, str]
    _tasks: dict[str, TaskSpec]
    _graph: WorkflowGraph
    _levels: list[list[str]]

    def __init__(self) -> None:
        raise WorkflowTypeError(texts.NOT_CONSTRUCTIBLE.format(name="Workflow"))

    @classmethod
    def _create(
        cls,
        name: str,
        tenant: str,
        description: str | None,
        tags: Mapping[str, str],
        tasks: Mapping[str, TaskSpec],
    ) -> Workflow:
        """Validate and build; raises ``_Invalid`` with the unprefixed reason."""
        deps, order = _analyse(tasks)
        wf = cls.__new__(cls)
        wf._name = name
        wf._tenant = tenant
        wf._description = description
        wf._tags = dict(tags)
        wf._tasks = {n: tasks[n] for n in order}
        dependents: dict[str, list[str]] = {n: [] for n in order}
        level: dict[str, int] = {}
        for n in order:
            level[n] = 1 + max((level[d] for d in deps[n]), default=-1)
            for d in deps[n]:
                dependents[d].append(n)
        wf._levels = [[] for _ in range(max(level.values()) + 1)]
        for n in sorted(order):
            wf._levels[level[n]].append(n)
        wf._graph = WorkflowGraph(
            name=name,
            version=_version(tasks, deps, name, tenant, description, wf._tags),
            tenant=tenant,
            description=description or "",
            task_names=tuple(order),
            dependencies=MappingProxyType({n: deps[n] for n in order}),
            dependents=MappingProxyType(
                {n: tuple(sorted(c)) for n, c in dependents.items()}
            ),
            roots=tuple(sorted(n for n in order if not deps[n])),
        )
        return wf

    @property
    def name(self) -> str:
        """Workflow name."""
        return self._name

    @property
    def description(self) -> str:
        """Description, ``""`` when none was set."""
        return self._description or ""

    @property
    def version(self) -> str:
        """Content hash of the structure, 16 lowercase hex digits (API.md 4.11)."""
        return self._graph.version

    def topological_sort(self) -> list[str]:
        """Return every task's namespace string, each after all its dependencies."""
        return list(self._graph.task_names)

    def get_execution_levels(self) -> list[list[str]]:
        """Return tasks by level: 0 has no dependencies, n depends on earlier ones."""
        return [list(level) for level in self._levels]

    def get_roots(self) -> list[str]:
        """Return the namespace strings of tasks without dependencies."""
        return list(self._graph.roots)

    def get_leaves(self) -> list[str]:
        """Return the namespace strings of tasks no other task depends on."""
        return sorted(n for n, c in self._graph.dependents.items() if not c)

    def validate(self) -> None:
        """Re-validate the DAG.

        Raises:
            ValueError: ``Workflow validation failed: <reason>``.
        """
        try:
            _analyse(self._tasks)
        except _Invalid as exc:
            raise WorkflowValidationError(
                texts.WORKFLOW_VALIDATION_FAILED.format(reason=exc)
            ) from None

    def __repr__(self) -> str:
        return f"Workflow(name='{self._name}', tasks={len(self._tasks)})"


def graph_of(workflow: Workflow) -> WorkflowGraph:
    """Return ``workflow``'s precomputed graph (computed once, when it was built)."""
    return workflow._graph


def _opt_str(name: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise WorkflowTypeError(
        texts.ARGUMENT_TYPE.format(
            owner="WorkflowBuilder()",
            name=name,
            expected="str or None",
            type=type(value).__name__,
        )
    )


def _str(owner: str, name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    raise WorkflowTypeError(
        texts.ARGUMENT_TYPE.format(
            owner=owner, name=name, expected="str", type=type(value).__name__
        )
    )


class WorkflowBuilder:
    """Collects tasks into a workflow (API.md 3.5): a context manager, or imperative.

    Tasks decorated inside ``with WorkflowBuilder(name) as b:`` are registered under the
    builder's namespace; leaving the block validates them and registers the workflow
    under its workflow id. Imperatively, :meth:`add_task` (also usable inside a block)
    picks registered tasks and :meth:`build` returns a :class:`Workflow` of exactly
    those.

    Args:
        name: Workflow name (any string, ``""`` included).
        tenant: Tenant label of the namespace (default ``"public"``).
        package: Package name of the namespace (default ``"embedded"``).
        workflow: Workflow id of the namespace (default ``name``).

    Raises:
        TypeError: ``name`` is not a ``str`` (e.g. ``None``), or an option is not
            ``str``.
    """

    __slots__ = ("_description", "_name", "_namespace", "_tags", "_tasks")

    def __init__(
        self,
        name: str,
        *,
        tenant: str | None = None,
        package: str | None = None,
        workflow: str | None = None,
    ) -> None:
        self._name = _str("WorkflowBuilder()", "name", name)
        self._namespace = WorkflowContext(
            _opt_str("tenant", tenant) or "public",
            _opt_str("package", package) or "embedded",
            _opt_str("workflow", workflow) or name,
        )
        self._description: str | None = None
        self._tags: dict[str, str] = {}
        self._tasks: dict[str, TaskSpec] = {}

    def description(self, description: str) -> None:
        """Set the workflow's description."""
        self._description = _str("description()", "description", description)

    def tag(self, key: str, value: str) -> None:
        """Add or overwrite a metadata tag."""
        self._tags[_str("tag()", "key", key)] = _str("tag()", "value", value)

    def add_task(self, task: str | Callable[..., Any]) -> None:
        """Add a registered task to this builder's task list (used by :meth:`build`).

        The task is looked up in the builder's namespace first, then among module-level
        tasks (which are placed into the builder's namespace).

        Args:
            task: A task id, or a function (its ``__name__`` is the id).

        Raises:
            ValueError: the task is not registered (``Task '<id>' not found in registry.
                Make sure it was decorated with @task.``), ``task`` has no ``__name__``,
                or it was already added (``Failed to add task: Duplicate task:
                <name>``).
        """
        task_id = task if isinstance(task, str) else getattr(task, "__name__", None)
        if not isinstance(task_id, str):
            raise TaskValidationError(texts.ADD_TASK_INVALID)
        spec = registry.get_task(self._namespace.task_name(task_id))
        if spec is None:
            pooled = registry.get_task(GLOBAL_NAMESPACE.task_name(task_id))
            if pooled is None:
                raise TaskValidationError(
                    texts.TASK_NOT_FOUND_IN_REGISTRY.format(task_id=task_id)
                )
            spec = pooled.rebased(self._namespace)
        if spec.name in self._tasks:
            raise WorkflowValidationError(
                texts.ADD_TASK_DUPLICATE.format(name=spec.name)
            )
        self._tasks[spec.name] = spec

    def build(self) -> Workflow:
        """Validate and return a workflow of the tasks added with :meth:`add_task`.

        Registers nothing.

        Raises:
            ValueError: ``Failed to build workflow: <reason>`` (``Workflow cannot be
                empty``, ``Missing dependency: ...``, ``Circular dependency detected:
                [...]``).
        """
        try:
            return self._workflow(self._name, self._tasks)
        except _Invalid as exc:
            raise WorkflowValidationError(
                texts.BUILD_FAILED.format(reason=exc)
            ) from None

    def _workflow(self, name: str, tasks: Mapping[str, TaskSpec]) -> Workflow:
        return Workflow._create(
            name, self._namespace.tenant_id, self._description, self._tags, tasks
        )

    def __enter__(self) -> WorkflowBuilder:
        registry.push_namespace(self._namespace)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        registry.pop_namespace()
        tasks = {
            s.name: s for s in registry.tasks_in_namespace(self._namespace).values()
        }
        for name, spec in self._tasks.items():
            tasks.setdefault(name, spec)
        workflow_id = self._namespace.workflow_id
        try:
            workflow = self._workflow(workflow_id, tasks)
        except _Invalid as exc:
            reason = str(exc)
        else:
            registry.register_workflow(workflow_id, workflow)
            return False
        # Raised outside the except clause, so its __context__ is the block's exception.
        raise WorkflowValidationError(
            texts.WORKFLOW_VALIDATION_FAILED.format(reason=reason)
        )

    def __repr__(self) -> str:
        return f"WorkflowBuilder(name='{self._name}')"


def register_workflow_constructor(
    name: str, constructor: Callable[[], Workflow]
) -> None:
    """Call ``constructor()`` once, now, and register its workflow under ``name``.

    Later executions of ``name`` reuse that workflow. Its tasks are registered too.

    Raises:
        TypeError: ``name`` is not a ``str``.
        ValueError: the constructor raised or is not callable (``Failed to call workflow
            constructor: <ExceptionType>: <message>``), or returned something else than
            a ``Workflow`` (``Failed to extract workflow from constructor: ...``).
    """
    _str("register_workflow_constructor()", "name", name)
    try:
        workflow: object = constructor()
    except Exception as exc:
        raise WorkflowValidationError(
            texts.CONSTRUCTOR_CALL_FAILED.format(type=type(exc).__name__, message=exc)
        ) from exc
    if not isinstance(workflow, Workflow):
        raise WorkflowValidationError(
            texts.CONSTRUCTOR_EXTRACT_FAILED.format(type=type(workflow).__name__)
        )
    registry.register_workflow(name, workflow)
