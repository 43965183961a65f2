"""cloaca: durable workflow orchestration on an asyncio actor runtime.

The public API is that of Cloacina's ``cloaca`` Python bindings (v0.3.1): tasks are
decorated with :func:`task`, assembled into workflows with :class:`WorkflowBuilder` and
executed durably by :class:`DefaultRunner` (or :class:`AsyncRunner` on the caller's own
event loop). Every error cloaca raises is a :class:`CloacaError` and the built-in
exception the reference raises (``ValueError``, ``TypeError``, ``KeyError``, ...).
Importing this package loads no database driver.
"""

from __future__ import annotations

from cloaca.admin import DatabaseAdmin, TenantConfig, TenantCredentials
from cloaca.config import DefaultRunnerConfig
from cloaca.context import Context
from cloaca.errors import (
    CloacaError,
    ConfigurationError,
    ContextError,
    DatabaseError,
    MigrationError,
    TaskError,
    TaskExecutionError,
    TaskTimeoutError,
    TaskValidationError,
    WorkflowError,
    WorkflowExecutionError,
    WorkflowTimeoutError,
    WorkflowValidationError,
)
from cloaca.hello import HelloClass, hello_world
from cloaca.namespace import TaskNamespace, WorkflowContext
from cloaca.result import PipelineResult
from cloaca.retry import (
    BackoffStrategy,
    RetryCondition,
    RetryPolicy,
    RetryPolicyBuilder,
)
from cloaca.runner import AsyncRunner, DefaultRunner
from cloaca.task import task
from cloaca.trigger import TriggerResult, trigger
from cloaca.workflow import Workflow, WorkflowBuilder, register_workflow_constructor

__version__ = "0.3.1"

__all__ = (
    # API.md 1.2: the 21 reference names, in its table's order.
    "hello_world",
    "HelloClass",
    "Context",
    "DefaultRunnerConfig",
    "DefaultRunner",
    "PipelineResult",
    "task",
    "trigger",
    "TriggerResult",
    "WorkflowBuilder",
    "Workflow",
    "register_workflow_constructor",
    "TaskNamespace",
    "WorkflowContext",
    "RetryPolicy",
    "RetryPolicyBuilder",
    "BackoffStrategy",
    "RetryCondition",
    "DatabaseAdmin",
    "TenantConfig",
    "TenantCredentials",
    # API.md section 0 item 5: the runtime on the caller's event loop.
    "AsyncRunner",
    # API.md section 0 item 4: the documented exception classes.
    "CloacaError",
    "WorkflowError",
    "WorkflowValidationError",
    "WorkflowExecutionError",
    "WorkflowTimeoutError",
    "TaskError",
    "TaskValidationError",
    "TaskExecutionError",
    "TaskTimeoutError",
    "ContextError",
    "ConfigurationError",
    "DatabaseError",
    "MigrationError",
)
