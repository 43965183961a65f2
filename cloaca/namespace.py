"""Task addresses: ``TaskNamespace`` and ``WorkflowContext`` (API.md 3.13-3.14, 4.1).

A task lives at ``tenant::package::workflow::task_id``; that string is what
``Workflow.topological_sort()`` returns and what the database stores as the task name. A
:class:`WorkflowContext` is the first three parts, the prefix a ``WorkflowBuilder``
defines tasks under. Both are immutable, hashable value objects.
"""

from __future__ import annotations

from typing import Final

from cloaca import texts
from cloaca.errors import TaskTypeError, TaskValidationError

__all__ = ["SEPARATOR", "TaskNamespace", "WorkflowContext"]

SEPARATOR: Final = "::"
"""Joins the parts of a namespace string (4.1)."""


def _str_arg(owner: str, name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TaskTypeError(
            texts.ARGUMENT_TYPE.format(
                owner=owner, name=name, expected="str", type=type(value).__name__
            )
        )
    return value


class TaskNamespace:
    """The four-part address of a task: tenant, package, workflow and task id.

    Args:
        tenant_id: Tenant label (``"public"`` by default in builders).
        package_name: Package name (``"embedded"`` for Python tasks).
        workflow_id: Workflow id.
        task_id: Task id; ``""`` for a workflow-level namespace (see :meth:`parent`).

    Raises:
        TypeError: a part is not a ``str``.
    """

    __slots__ = ("_parts",)

    _parts: tuple[str, str, str, str]

    def __init__(
        self, tenant_id: str, package_name: str, workflow_id: str, task_id: str
    ) -> None:
        owner = "TaskNamespace()"
        self._parts = (
            _str_arg(owner, "tenant_id", tenant_id),
            _str_arg(owner, "package_name", package_name),
            _str_arg(owner, "workflow_id", workflow_id),
            _str_arg(owner, "task_id", task_id),
        )

    @staticmethod
    def from_string(namespace_str: str) -> TaskNamespace:
        """Parse ``"tenant::package::workflow::task"`` (empty parts allowed).

        Raises:
            ValueError: the text does not have exactly four ``::``-separated parts
                (``Invalid namespace format: ...``).
        """
        parts = _str_arg(
            "TaskNamespace.from_string()", "namespace_str", namespace_str
        ).split(SEPARATOR)
        if len(parts) != 4:
            raise TaskValidationError(
                texts.NAMESPACE_INVALID.format(text=namespace_str)
            )
        return TaskNamespace(parts[0], parts[1], parts[2], parts[3])

    @property
    def tenant_id(self) -> str:
        """The tenant label."""
        return self._parts[0]

    @property
    def package_name(self) -> str:
        """The package name."""
        return self._parts[1]

    @property
    def workflow_id(self) -> str:
        """The workflow id."""
        return self._parts[2]

    @property
    def task_id(self) -> str:
        """The task id (``""`` for a workflow-level namespace)."""
        return self._parts[3]

    def parent(self) -> TaskNamespace:
        """Return the workflow-level namespace: same first parts, ``task_id=""``."""
        return TaskNamespace(self._parts[0], self._parts[1], self._parts[2], "")

    def is_child_of(self, parent: TaskNamespace) -> bool:
        """Whether ``parent`` is this task's workflow-level namespace."""
        return (
            self._parts[:3] == parent._parts[:3]
            and self._parts[3] != ""
            and parent._parts[3] == ""
        )

    def is_sibling_of(self, other: TaskNamespace) -> bool:
        """Whether ``other`` is a different task of the same workflow."""
        return (
            self._parts[:3] == other._parts[:3]
            and self._parts[3] != ""
            and other._parts[3] != ""
            and self._parts[3] != other._parts[3]
        )

    def __str__(self) -> str:
        return SEPARATOR.join(self._parts)

    def __repr__(self) -> str:
        return "TaskNamespace('{}', '{}', '{}', '{}')".format(*self._parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskNamespace):
            return False
        return self._parts == other._parts

    def __hash__(self) -> int:
        return hash(self._parts)


class WorkflowContext:
    """A workflow's namespace prefix: tenant, package and workflow id.

    Args:
        tenant_id: Tenant label.
        package_name: Package name.
        workflow_id: Workflow id.

    Raises:
        TypeError: a part is not a ``str``.
    """

    __slots__ = ("_parts", "_prefix")

    _parts: tuple[str, str, str]
    _prefix: str

    def __init__(self, tenant_id: str, package_name: str, workflow_id: str) -> None:
        owner = "WorkflowContext()"
        self._parts = (
            _str_arg(owner, "tenant_id", tenant_id),
            _str_arg(owner, "package_name", package_name),
            _str_arg(owner, "workflow_id", workflow_id),
        )
        self._prefix = SEPARATOR.join(self._parts) + SEPARATOR

    @property
    def tenant_id(self) -> str:
        """The tenant label."""
        return self._parts[0]

    @property
    def package_name(self) -> str:
        """The package name."""
        return self._parts[1]

    @property
    def workflow_id(self) -> str:
        """The workflow id."""
        return self._parts[2]

    @property
    def prefix(self) -> str:
        """``"tenant::package::workflow::"``: a task's full name is this plus its id."""
        return self._prefix

    def task_name(self, task_id: str) -> str:
        """Return the full namespace string of ``task_id`` in this workflow."""
        return self._prefix + task_id

    def task_namespace(self, task_id: str) -> TaskNamespace:
        """Return the namespace of ``task_id`` in this workflow."""
        return TaskNamespace(self._parts[0], self._parts[1], self._parts[2], task_id)

    def resolve_dependency(self, task_name: str) -> TaskNamespace:
        """Return the namespace of ``task_name``, like :meth:`task_namespace`."""
        return self.task_namespace(task_name)

    def workflow_namespace(self) -> TaskNamespace:
        """Return the workflow-level namespace (``task_id=""``)."""
        return self.task_namespace("")

    def contains_namespace(self, namespace: TaskNamespace) -> bool:
        """Whether ``namespace`` lies in this workflow (first three parts equal)."""
        return (
            namespace.tenant_id,
            namespace.package_name,
            namespace.workflow_id,
        ) == self._parts

    def __str__(self) -> str:
        return SEPARATOR.join(self._parts)

    def __repr__(self) -> str:
        return "WorkflowContext('{}', '{}', '{}')".format(*self._parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkflowContext):
            return False
        return self._parts == other._parts

    def __hash__(self) -> int:
        return hash(self._parts)
