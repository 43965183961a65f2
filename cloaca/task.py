"""The ``@cloaca.task(...)`` decorator and the ``TaskSpec`` it registers (API.md 3.4).

Applying the decorator registers a :class:`TaskSpec` in the process-global task registry
and returns the function unchanged. Where it registers depends on where it is applied
(API.md section 0 item 1):

* inside a ``with WorkflowBuilder(...)`` block: under the innermost block's namespace
  ``(tenant, package, workflow, task_id)``, exactly as API.md 3.4 describes;
* anywhere else (a *module-level task*): in the global default pool, the namespace
  :data:`GLOBAL_NAMESPACE` (``public::embedded::__global__``).
  ``WorkflowBuilder.add_task`` finds a task in its own namespace first and in this pool
  second, and rebases a pooled task into the builder's namespace
  (:meth:`TaskSpec.rebased`), dependencies included.

Registration only: executing tasks is the runtime's business; it reads the spec's
fields.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import msgspec

from cloaca import registry, texts
from cloaca.errors import TaskTypeError, TaskValidationError
from cloaca.namespace import TaskNamespace, WorkflowContext
from cloaca.retry import RetryPolicy, policy_from_keywords

__all__ = ["GLOBAL_NAMESPACE", "TaskDecorator", "TaskSpec", "make_spec", "task"]

F = TypeVar("F", bound=Callable[..., Any])

GLOBAL_NAMESPACE: Final = WorkflowContext("public", "embedded", "__global__")
"""Where tasks decorated outside any builder block are registered (section 0 item 1)."""


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One registered task: what the runtime needs to run an attempt of it.

    Attributes:
        id: Short task id, e.g. ``"load"``.
        name: Full namespace string ``"tenant::package::workflow::id"``.
        namespace: The same as a :class:`~cloaca.TaskNamespace`.
        function: The user's function, exactly as decorated.
        dependencies: Full namespace strings of the dependencies, in declared order.
        dependency_ids: The same as short task ids, in declared order.
        retry_policy: The task's :class:`~cloaca.RetryPolicy`.
        on_success: ``on_success(task_id, context)`` callback, or ``None``.
        on_failure: ``on_failure(task_id, error, context)`` callback, or ``None``.
        is_async: Whether ``function`` is a coroutine function.
    """

    id: str
    name: str
    namespace: TaskNamespace
    function: Callable[..., Any]
    dependencies: tuple[str, ...]
    dependency_ids: tuple[str, ...]
    retry_policy: RetryPolicy
    on_success: Callable[..., Any] | None = None
    on_failure: Callable[..., Any] | None = None
    is_async: bool = False

    def rebased(self, workflow: WorkflowContext) -> TaskSpec:
        """Return this task moved into ``workflow``, its dependencies resolved there."""
        if self.name == workflow.task_name(self.id):
            return self
        return msgspec.structs.replace(
            self,
            name=workflow.task_name(self.id),
            namespace=workflow.task_namespace(self.id),
            dependencies=tuple(workflow.task_name(d) for d in self.dependency_ids),
        )


def make_spec(
    workflow: WorkflowContext,
    task_id: str,
    function: Callable[..., Any],
    *,
    dependency_ids: Sequence[str] = (),
    retry_policy: RetryPolicy | None = None,
    on_success: Callable[..., Any] | None = None,
    on_failure: Callable[..., Any] | None = None,
) -> TaskSpec:
    """Build the :class:`TaskSpec` of ``function`` as ``task_id`` of ``workflow``."""
    ids = tuple(dependency_ids)
    return TaskSpec(
        id=task_id,
        name=workflow.task_name(task_id),
        namespace=workflow.task_namespace(task_id),
        function=function,
        dependencies=tuple(workflow.task_name(d) for d in ids),
        dependency_ids=ids,
        retry_policy=RetryPolicy.default() if retry_policy is None else retry_policy,
        on_success=on_success,
        on_failure=on_failure,
        is_async=inspect.iscoroutinefunction(function),
    )


def _type_error(name: str, expected: str, value: object) -> TaskTypeError:
    return TaskTypeError(
        texts.TASK_ARGUMENT_TYPE.format(
            name=name, expected=expected, type=type(value).__name__
        )
    )


class TaskDecorator:
    """The decorator ``task(...)`` returns (internal; not exported)."""

    __slots__ = ("_dependencies", "_id", "_on_failure", "_on_success", "_policy")

    def __init__(
        self,
        task_id: str | None,
        dependencies: tuple[object, ...],
        policy: RetryPolicy,
        on_success: Callable[..., Any] | None,
        on_failure: Callable[..., Any] | None,
    ) -> None:
        self._id = task_id
        self._dependencies = dependencies
        self._policy = policy
        self._on_success = on_success
        self._on_failure = on_failure

    def __call__(self, func: F) -> F:
        """Register ``func`` as a task and return it unchanged.

        Raises:
            TypeError: ``func`` is not callable, or has no ``__name__`` and no ``id=``
                was given.
            ValueError: a dependency item is neither a ``str`` nor has ``__name__``
                (``Dependency <index> must be either a string or a function object with
                __name__ attribute``).
        """
        if not callable(func):
            raise TaskTypeError(
                texts.TASK_FUNCTION_NOT_CALLABLE.format(type=type(func).__name__)
            )
        task_id = self._id
        if task_id is None:
            task_id = getattr(func, "__name__", None)
            if not isinstance(task_id, str):
                raise TaskTypeError(
                    texts.TASK_FUNCTION_UNNAMED.format(type=type(func).__name__)
                )
        dependency_ids: list[str] = []
        for index, item in enumerate(self._dependencies):
            if isinstance(item, str):
                dependency_ids.append(item)
                continue
            name = getattr(item, "__name__", None)
            if not isinstance(name, str):
                raise TaskValidationError(texts.DEPENDENCY_INVALID.format(index=index))
            # 3.4: a function dependency means its __name__, not the id= it was given.
            dependency_ids.append(name)
        workflow = registry.active_namespace() or GLOBAL_NAMESPACE
        registry.register_task(
            make_spec(
                workflow,
                task_id,
                func,
                dependency_ids=dependency_ids,
                retry_policy=self._policy,
                on_success=self._on_success,
                on_failure=self._on_failure,
            )
        )
        return func

    def __repr__(self) -> str:
        return f"<task decorator id={self._id!r}>"


def task(
    *,
    id: str | None = None,  # shadows the builtin: the reference's keyword name (3.4)
    dependencies: list[Any] | tuple[Any, ...] | None = None,
    retry_attempts: int | None = None,
    retry_backoff: str | None = None,
    retry_delay_ms: int | None = None,
    retry_max_delay_ms: int | None = None,
    retry_condition: str | None = None,
    retry_jitter: bool | None = None,
    on_success: Callable[..., Any] | None = None,
    on_failure: Callable[..., Any] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> TaskDecorator:
    """Declare a task: ``@cloaca.task(...)`` above a function taking one ``Context``.

    Inside a ``with WorkflowBuilder(...)`` block the task belongs to that block's
    workflow; elsewhere it is a module-level task for ``WorkflowBuilder.add_task``
    (API.md section 0 item 1). The decorated function is returned unchanged and stays
    directly callable.

    Args:
        id: Task id; defaults to the function's ``__name__``.
        dependencies: Task ids (``str``) or functions (their ``__name__``) this task
            waits for, resolved in the same workflow namespace.
        retry_attempts: Maximum total number of executions, the first included (default
            3).
        retry_backoff: ``"fixed"``, ``"linear"`` or ``"exponential"`` (default).
        retry_delay_ms: Initial delay in milliseconds (default 1000).
        retry_max_delay_ms: Cap on the computed delay in milliseconds (default 60000).
        retry_condition: ``"never"``, ``"transient"`` or ``"all"`` (default).
        retry_jitter: Multiply each delay by a random factor in [0.75, 1.25] (default
            True).
        on_success: Called as ``on_success(task_id, context)`` after a successful
            attempt.
        on_failure: Called as ``on_failure(task_id, error, context)`` after each failed
            attempt.
        retry_policy: A :class:`~cloaca.RetryPolicy`, instead of the ``retry_*``
            keywords.

    Returns:
        The decorator to apply to the task function.

    Raises:
        TypeError: an argument of the wrong type (e.g. a bare string for
            ``dependencies``).
        OverflowError: a negative ``retry_*`` count or delay.
        ValueError: an unknown ``retry_backoff``/``retry_condition`` string, or
            ``retry_policy`` combined with ``retry_*`` keywords.
    """
    if id is not None and not isinstance(id, str):
        raise _type_error("id", "str or None", id)
    if dependencies is None:
        deps: tuple[object, ...] = ()
    elif isinstance(dependencies, list | tuple):
        deps = tuple(dependencies)
    else:
        raise _type_error("dependencies", "a list or tuple", dependencies)
    if retry_policy is not None:
        if not isinstance(retry_policy, RetryPolicy):
            raise _type_error("retry_policy", "RetryPolicy or None", retry_policy)
        keywords = {
            "retry_attempts": retry_attempts,
            "retry_backoff": retry_backoff,
            "retry_delay_ms": retry_delay_ms,
            "retry_max_delay_ms": retry_max_delay_ms,
            "retry_condition": retry_condition,
            "retry_jitter": retry_jitter,
        }
        given = [name for name, value in keywords.items() if value is not None]
        if given:
            raise TaskValidationError(
                texts.RETRY_POLICY_AND_KEYWORDS.format(names=", ".join(given))
            )
        policy = retry_policy
    else:
        policy = policy_from_keywords(
            retry_attempts=retry_attempts,
            retry_backoff=retry_backoff,
            retry_delay_ms=retry_delay_ms,
            retry_max_delay_ms=retry_max_delay_ms,
            retry_condition=retry_condition,
            retry_jitter=retry_jitter,
        )
    return TaskDecorator(id, deps, policy, on_success, on_failure)
