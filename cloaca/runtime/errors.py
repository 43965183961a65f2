"""Internal runtime errors and their mapping onto API.md's public exceptions.

::

    EngineError(Exception)
    ├── UnknownWorkflow      -> WorkflowExecutionError (ValueError)
    ├── ExecutionTimedOut    -> WorkflowTimeoutError (ValueError)
    ├── ExecutionLost        -> DatabaseError (ValueError)
    └── RunnerClosed         -> WorkflowExecutionError (ValueError)

Storage errors (``cloaca.storage.errors``) map onto ``DatabaseError``, schema
problems onto ``MigrationError`` (both as ``ValueError``). ``to_public`` is the
only translation point; the facades raise
its result ``from`` the internal error so ``__cause__`` keeps the diagnostics.
"""

from __future__ import annotations

from cloaca import errors as public
from cloaca.storage.errors import MigrationFailed, SchemaMismatch, StorageError
from cloaca.storage.urls import InvalidDatabaseUrl

EXECUTE_PREFIX = "Workflow execution failed: "
"""API.md 3.9.2: the normative prefix of every ``execute()`` failure."""


class EngineError(Exception):
    """The runtime failed."""


class UnknownWorkflow(EngineError):
    """No workflow of that name is registered."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class ExecutionTimedOut(EngineError):
    """``pipeline_timeout_seconds`` passed before the execution ended."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class RunnerClosed(EngineError):
    """The runner was shut down."""


class ExecutionLost(EngineError):
    """The database failed before the execution's creation was stored."""

    def __init__(self, execution_id: object) -> None:
        super().__init__(execution_id)
        self.execution_id = execution_id


def to_public(error: BaseException) -> BaseException:
    """The public exception (type and API.md text) for an internal ``error``."""
    if isinstance(error, UnknownWorkflow):
        return public.WorkflowExecutionError(
            f"{EXECUTE_PREFIX}Pipeline execution failed: Failed to schedule workflow: "
            f"Workflow not found in registry: {error.name}"
        )
    if isinstance(error, ExecutionTimedOut):
        return public.WorkflowTimeoutError(
            f"{EXECUTE_PREFIX}Pipeline timeout after {error.seconds:g}s"
        )
    if isinstance(error, ExecutionLost):
        return public.DatabaseValueError(
            f"{EXECUTE_PREFIX}the database failed before execution "
            f"{error.execution_id} was stored; it did not run"
        )
    if isinstance(error, RunnerClosed):
        return public.WorkflowExecutionError(
            f"{EXECUTE_PREFIX}the runner has been shut down"
        )
    if isinstance(error, InvalidDatabaseUrl):
        return public.ConfigurationValueError(str(error))
    if isinstance(error, (MigrationFailed, SchemaMismatch)):
        return public.MigrationValueError(str(error))
    if isinstance(error, StorageError):
        return public.DatabaseValueError(str(error))
    return error
