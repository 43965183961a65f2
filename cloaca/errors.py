"""The public exception classes (API.md section 0 item 4) and their internal mixes.

Every error cloaca raises is a :class:`CloacaError` **and** the built-in exception that
API.md 1.4 prescribes for its situation, so ``except ValueError`` (code written for the
reference) and ``except cloaca.WorkflowValidationError`` (code written from the docs)
both work. A documented class whose situations all map onto one built-in inherits from
it. A documented class raised in situations that need different built-ins stays plain
and is raised through small internal subclasses that add the built-in (marked ``*``;
not exported: user code catches them through either parent)::

    CloacaError(Exception)
    ├── WorkflowError
    │   ├── WorkflowValidationError(ValueError)  build/validation failures, add_task,
    │   │                                        register_workflow_constructor
    │   ├── WorkflowExecutionError(ValueError)   execute() failures
    │   ├── WorkflowTimeoutError(ValueError)     pipeline_timeout_seconds exceeded
    │   └── *WorkflowTypeError(TypeError)        WorkflowBuilder(None), Workflow()
    ├── TaskError
    │   ├── TaskValidationError(ValueError)      bad dependency item, unknown task or
    │   │                                        retry string, namespace parsing
    │   ├── TaskExecutionError(ValueError)       a task attempt failed (runtime)
    │   ├── TaskTimeoutError(ValueError)         an attempt timed out (runtime)
    │   ├── *TaskTypeError(TypeError)            task(...)/TaskNamespace argument types
    │   └── *TaskOverflowError(OverflowError)    negative retry_* counts and delays
    ├── ContextError
    │   ├── *ContextKeyError(KeyError)           missing key: ctx[k], del, update()
    │   ├── *ContextValueError(ValueError)       duplicate insert(), bad JSON, number
    │   │                                        out of range
    │   └── *ContextTypeError(TypeError)         non-str key, non-dict, non-JSON value
    ├── ConfigurationError
    │   ├── *ConfigurationTypeError(TypeError)   DefaultRunnerConfig, retry objects,
    │   │                                        trigger(): wrong types; constructors
    │   │                                        of classes with static factories
    │   ├── *ConfigurationOverflowError(OverflowError)  negative unsigned field
    │   └── *ConfigurationValueError(ValueError) bad URL, negative delay, poll_interval
    └── DatabaseError
        ├── *DatabaseValueError(ValueError)      storage failure under a runner
        ├── *DatabaseRuntimeError(RuntimeError)  DatabaseAdmin failure (API.md 3.16)
        └── MigrationError
            ├── *MigrationValueError(ValueError)      migration failure, runner
            └── *MigrationRuntimeError(RuntimeError)  migration failure, DatabaseAdmin

``KeyError.__str__`` quotes its argument; :class:`ContextKeyError` overrides it so that
``str(exc)`` reads exactly as API.md's message text (``Key not found: 'k'``).
Errors Python itself raises before cloaca's code runs (an unknown keyword argument, a
positional argument to ``task()``) are plain built-ins, as in the reference.
"""

from __future__ import annotations

__all__ = [
    "CloacaError",
    "ConfigurationError",
    "ConfigurationOverflowError",
    "ConfigurationTypeError",
    "ConfigurationValueError",
    "ContextError",
    "ContextKeyError",
    "ContextTypeError",
    "ContextValueError",
    "DatabaseError",
    "DatabaseRuntimeError",
    "DatabaseValueError",
    "MigrationError",
    "MigrationRuntimeError",
    "MigrationValueError",
    "TaskError",
    "TaskExecutionError",
    "TaskOverflowError",
    "TaskTimeoutError",
    "TaskTypeError",
    "TaskValidationError",
    "WorkflowError",
    "WorkflowExecutionError",
    "WorkflowTimeoutError",
    "WorkflowTypeError",
    "WorkflowValidationError",
]


class CloacaError(Exception):
    """Root of every error cloaca raises."""


# --- workflows
# ---------------------------------------------------------------------------


class WorkflowError(CloacaError):
    """A workflow could not be defined, registered or executed."""


class WorkflowValidationError(WorkflowError, ValueError):
    """A workflow definition is invalid: empty, missing dependency, cycle.."""


class WorkflowExecutionError(WorkflowError, ValueError):
    """``execute()`` could not run the workflow (unknown name, runner shut down)."""


class WorkflowTimeoutError(WorkflowError, ValueError):
    """``execute()`` gave up waiting after ``pipeline_timeout_seconds``."""


class WorkflowTypeError(WorkflowError, TypeError):
    """A workflow API was given an argument of the wrong type (internal)."""


# --- tasks
# -------------------------------------------------------------------------------


class TaskError(CloacaError):
    """A task could not be defined or one of its attempts failed."""


class TaskValidationError(TaskError, ValueError):
    """A task declaration is invalid."""


class TaskExecutionError(TaskError, ValueError):
    """A task attempt failed."""


class TaskTimeoutError(TaskError, ValueError):
    """A task attempt exceeded ``task_timeout_seconds``."""


class TaskTypeError(TaskError, TypeError):
    """A task API was given an argument of the wrong type (internal)."""


class TaskOverflowError(TaskError, OverflowError):
    """A task's unsigned setting was given a negative or too large value (internal)."""


# --- contexts
# ----------------------------------------------------------------------------


class ContextError(CloacaError):
    """A :class:`~cloaca.Context` operation failed."""


class ContextKeyError(ContextError, KeyError):
    """A key is missing from a context (internal).

    ``str()`` returns the message as given: ``KeyError`` would wrap it in quotes.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ContextValueError(ContextError, ValueError):
    """A context operation was given a bad value (internal)."""


class ContextTypeError(ContextError, TypeError):
    """A context operation was given a key or value of the wrong type (internal)."""


# --- configuration
# -----------------------------------------------------------------------


class ConfigurationError(CloacaError):
    """A setting (runner config, retry object, trigger, URL) is invalid."""


class ConfigurationTypeError(ConfigurationError, TypeError):
    """A configuration value has the wrong type (internal)."""


class ConfigurationOverflowError(ConfigurationError, OverflowError):
    """An unsigned configuration value is negative or too large (internal)."""


class ConfigurationValueError(ConfigurationError, ValueError):
    """A configuration value is out of its domain (internal)."""


# --- storage
# -----------------------------------------------------------------------------


class DatabaseError(CloacaError):
    """The database could not be opened, read or written."""


class DatabaseValueError(DatabaseError, ValueError):
    """A database failure surfacing through a runner (internal)."""


class DatabaseRuntimeError(DatabaseError, RuntimeError):
    """A database failure surfacing through ``DatabaseAdmin`` (internal)."""


class MigrationError(DatabaseError):
    """The database schema could not be created or migrated."""


class MigrationValueError(MigrationError, ValueError):
    """A migration failure surfacing through a runner (internal)."""


class MigrationRuntimeError(MigrationError, RuntimeError):
    """A migration failure surfacing through ``DatabaseAdmin`` (internal)."""
