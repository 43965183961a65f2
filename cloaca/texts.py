"""API.md's normative message texts, one constant per message, each citing its section.

Templates use ``str.format`` fields. Texts marked "(ours)" are not in API.md: they are
cloaca's wording for situations API.md leaves open. Everything else is normative: change
a constant only together with API.md. Tests assert with literals copied from API.md,
never with these constants, so a typo here cannot hide. No exception classes live here
(errors.py).
"""

from __future__ import annotations

from typing import Final

# --- 3.1 / 3.2 smoke tests
# -----------------------------------------------------------------

HELLO_WORLD: Final = "Hello from Cloaca backend!"
"""3.1: the return value of ``hello_world()``."""

HELLO_CLASS_MESSAGE: Final = "Hello from HelloClass!"
"""3.2: the return value of ``HelloClass().get_message()``."""

# --- 1.5 / 3.3 Context
# ---------------------------------------------------------------------

CONTEXT_KEY_EXISTS: Final = "Key already exists: Key already exists: {key}"
"""3.3: ``Context.insert`` of an existing key (``ValueError``)."""

CONTEXT_UPDATE_KEY_NOT_FOUND: Final = "Key not found: Key not found: {key}"
"""3.3: ``Context.update`` of a missing key (``KeyError``)."""

CONTEXT_KEY_NOT_FOUND: Final = "Key not found: '{key}'"
"""3.3: ``ctx[key]`` / ``del ctx[key]`` of a missing key (``KeyError``)."""

CONTEXT_JSON_DESERIALIZE_FAILED: Final = "Failed to deserialize from JSON: {reason}"
"""3.3: ``Context.from_json`` of invalid JSON or a non-object (``ValueError``)."""

JSON_NUMBER_OUT_OF_RANGE: Final = "JSON number out of range"
"""1.5: an ``int`` outside -2**63 .. 2**64-1 stored in a context."""

CONTEXT_NUMBER_OUT_OF_RANGE: Final = (
    JSON_NUMBER_OUT_OF_RANGE + " for key '{key}': {value}"
)
"""1.5 message followed by the key (ours)."""

CONTEXT_KEY_NOT_STR: Final = "Context keys must be str, not {type}"
"""1.5/3.3: a non-``str`` key (ours; ``TypeError``)."""

CONTEXT_DICT_KEY_NOT_STR: Final = (
    "Dict keys must be str, not {type} (in the value for key '{key}')"
)
"""1.5: a nested dict with a non-``str`` key (ours; ``TypeError``)."""

CONTEXT_VALUE_NOT_JSON: Final = (
    "Value for key '{key}' is not JSON-representable: {type} "
    "(a context holds None, bool, int, float, str, list, tuple, set and str-keyed dict)"
)
"""1.5: a value of a type a context cannot hold (ours; ``TypeError``)."""

CONTEXT_VALUE_TOO_DEEP: Final = (
    "Value for key '{key}' is nested too deeply or is cyclic"
)
"""1.5: a self-containing or absurdly deep value (ours; ``ValueError``)."""

CONTEXT_DATA_NOT_DICT: Final = "Context data must be a dict, not {type}"
"""3.3: ``Context(data)`` / ``update_from_dict(data)`` with a non-dict (ours)."""

# --- 3.4 task decorator
# ----------------------------------------------------------------------

DEPENDENCY_INVALID: Final = (
    "Dependency {index} must be either a string or a function object with __name__ "
    "attribute"
)
"""3.4: an item of ``dependencies`` that is neither a ``str`` nor has ``__name__``."""

TASK_ARGUMENT_TYPE: Final = "task() argument '{name}' must be {expected}, not {type}"
"""3.4: a ``task(...)`` keyword of the wrong type (ours; ``TypeError``)."""

TASK_ARGUMENT_NEGATIVE: Final = (
    "task() argument '{name}' must be between 0 and {limit}, got {value}"
)
"""3.4: a negative or too large ``retry_*`` count (ours; ``OverflowError``)."""

TASK_FUNCTION_NOT_CALLABLE: Final = "@task must decorate a callable, not {type}"
"""3.4: decorating something that is not callable (ours; ``TypeError``)."""

TASK_FUNCTION_UNNAMED: Final = (
    "@task needs id= for a callable without __name__ ({type})"
)
"""3.4: decorating a callable without ``__name__`` or ``id=`` (ours; ``TypeError``)."""

RETRY_BACKOFF_INVALID: Final = (
    "Invalid retry_backoff {value!r}: expected one of 'fixed', 'linear', 'exponential'"
)
"""Section 0 item 6: an unknown ``retry_backoff`` string (ours; ``ValueError``)."""

RETRY_CONDITION_INVALID: Final = (
    "Invalid retry_condition {value!r}: expected one of 'never', 'transient', 'all'"
)
"""Section 0 item 6: an unknown ``retry_condition`` string (ours; ``ValueError``)."""

RETRY_POLICY_AND_KEYWORDS: Final = (
    "retry_policy cannot be combined with retry_* keywords (got {names})"
)
"""Section 0 item 6: ``retry_policy=`` together with ``retry_*`` keywords (ours)."""

# --- 3.5 / 3.6 builder and workflow
# ------------------------------------------------------------

TASK_NOT_FOUND_IN_REGISTRY: Final = (
    "Task '{task_id}' not found in registry. Make sure it was decorated with @task."
)
"""3.5: ``WorkflowBuilder.add_task`` of an unknown task."""

ADD_TASK_INVALID: Final = (
    "Task must be either a string task ID or a function object with __name__ attribute"
)
"""3.5: ``WorkflowBuilder.add_task`` of an object without ``__name__``."""

ADD_TASK_DUPLICATE: Final = "Failed to add task: Duplicate task: {name}"
"""3.5: ``WorkflowBuilder.add_task`` of a task already added (prefix normative)."""

BUILD_FAILED: Final = "Failed to build workflow: {reason}"
"""3.5: ``WorkflowBuilder.build()`` failures."""

WORKFLOW_VALIDATION_FAILED: Final = "Workflow validation failed: {reason}"
"""3.5/3.6: validation on leaving a ``with`` block and ``Workflow.validate()``."""

WORKFLOW_EMPTY: Final = "Workflow cannot be empty"
"""3.5: reason for a workflow without tasks."""

MISSING_DEPENDENCY: Final = (
    "Missing dependency: task '{task}' depends on '{dependency}' which is not "
    "registered"
)
"""3.5: reason for a dependency that is not part of the workflow."""

CIRCULAR_DEPENDENCY: Final = "Circular dependency detected: {cycle}"
"""3.5: reason for a cycle; ``{cycle}`` lists namespace strings: ``["a", "b"]``."""

SORT_FAILED: Final = "Failed to sort tasks: {reason}"
"""3.6: ``Workflow.topological_sort()`` failure."""

LEVELS_FAILED: Final = "Failed to get execution levels: {reason}"
"""3.6: ``Workflow.get_execution_levels()`` failure."""

NOT_CONSTRUCTIBLE: Final = "No constructor defined for {name}"
"""3.6/3.12/3.15: calling a class that is not user-constructible (ours)."""

ARGUMENT_TYPE: Final = "{owner} argument '{name}' must be {expected}, not {type}"
"""Any public callable given an argument of the wrong type (ours; ``TypeError``)."""

# --- 3.7 register_workflow_constructor
# ---------------------------------------------------------

CONSTRUCTOR_CALL_FAILED: Final = (
    "Failed to call workflow constructor: {type}: {message}"
)
"""3.7: the constructor raised (or is not callable)."""

CONSTRUCTOR_EXTRACT_FAILED: Final = (
    "Failed to extract workflow from constructor: "
    "TypeError: '{type}' object cannot be converted to 'Workflow'"
)
"""3.7: the constructor returned no ``Workflow`` (prefix normative)."""

# --- 3.8 DefaultRunnerConfig
# ---------------------------------------------------------------

CONFIG_FIELD_TYPE: Final = (
    "DefaultRunnerConfig field '{name}' must be {expected}, not {type}"
)
"""3.8: a field of the wrong type (ours; ``TypeError``)."""

CONFIG_FIELD_RANGE: Final = (
    "DefaultRunnerConfig field '{name}' must be between {low} and {high}, got {value}"
)
"""3.8: an integer field out of its range (ours; ``OverflowError``)."""

# --- 3.9 DefaultRunner (texts the runner raises)
# ----------------------------------------------

WORKFLOW_EXECUTION_FAILED: Final = "Workflow execution failed: {reason}"
"""3.9.2: prefix of every ``execute()`` failure."""

WORKFLOW_NOT_FOUND: Final = (
    "Pipeline execution failed: Failed to schedule workflow: "
    "Workflow not found in registry: {name}"
)
"""3.9.2: reason for an unknown workflow name (informative after the prefix)."""

PIPELINE_TIMEOUT: Final = "Pipeline timeout after {seconds}s"
"""3.9.2: reason when ``pipeline_timeout_seconds`` elapses."""

SCHEMA_REQUIRES_POSTGRES: Final = (
    "Schema-based multi-tenancy requires PostgreSQL. SQLite does not support database "
    "schemas. Use a PostgreSQL URL like 'postgres://user:pass@host/db'"
)
"""3.9.1: ``with_schema`` with a non-PostgreSQL URL."""

SCHEMA_EMPTY: Final = "Schema name cannot be empty"
"""3.9.1: ``with_schema`` with ``schema == ""``."""

SCHEMA_CHARSET: Final = (
    "Schema name must contain only alphanumeric characters and underscores"
)
"""3.9.1: ``with_schema`` with a character that is not alphanumeric or ``_``."""

SCHEMA_RUNNER_FAILED: Final = (
    "Failed to create DefaultRunner with schema {schema}: {reason}"
)
"""3.9.1: step 4 failures of ``with_schema`` (prefix normative)."""

CRON_NOT_ENABLED: Final = "Cron scheduling not enabled"
"""3.9.4: any cron method with ``enable_cron_scheduling=False`` (after a prefix)."""

INVALID_SCHEDULE_ID: Final = "Invalid schedule ID: {value}"
"""3.9.4: a schedule id that is not a UUID (wrapped by a prefix)."""

INVALID_CRON: Final = "Invalid cron expression or timezone: {reason}"
"""3.9.4: an invalid cron expression or IANA timezone (wrapped by a prefix)."""

INVALID_DATETIME: Final = "Invalid datetime format: {value}"
"""3.9.4: ``get_cron_execution_stats(since)`` with a non-RFC 3339 string."""

CRON_REGISTER_FAILED: Final = "Failed to register cron workflow: {reason}"
"""3.9.4: prefix of ``register_cron_workflow`` errors."""

CRON_LIST_FAILED: Final = "Failed to list cron schedules: {reason}"
"""3.9.4: prefix of ``list_cron_schedules`` errors."""

CRON_GET_FAILED: Final = "Failed to get cron schedule: {reason}"
"""3.9.4: prefix of ``get_cron_schedule`` errors."""

CRON_UPDATE_FAILED: Final = "Failed to update cron schedule: {reason}"
"""3.9.4: prefix of ``update_cron_schedule`` / ``set_cron_schedule_enabled`` errors."""

CRON_DELETE_FAILED: Final = "Failed to delete cron schedule: {reason}"
"""3.9.4: prefix of ``delete_cron_schedule`` errors."""

CRON_HISTORY_FAILED: Final = "Failed to get cron execution history: {reason}"
"""3.9.4: prefix of ``get_cron_execution_history`` errors."""

CRON_STATS_FAILED: Final = "Failed to get cron execution stats: {reason}"
"""3.9.4: prefix of ``get_cron_execution_stats`` errors."""

TRIGGER_LIST_FAILED: Final = "Failed to list trigger schedules: {reason}"
"""3.9.5: prefix of ``list_trigger_schedules`` errors."""

TRIGGER_GET_FAILED: Final = "Failed to get trigger schedule: {reason}"
"""3.9.5: prefix of ``get_trigger_schedule`` errors."""

TRIGGER_UPDATE_FAILED: Final = "Failed to update trigger: {reason}"
"""3.9.5: prefix of ``set_trigger_enabled`` errors."""

TRIGGER_HISTORY_FAILED: Final = "Failed to get trigger execution history: {reason}"
"""3.9.5: prefix of ``get_trigger_execution_history`` errors."""

# --- 3.11 / 3.12 triggers
# ----------------------------------------------------------------------

POLL_INTERVAL_INVALID: Final = "Invalid poll_interval: Invalid duration: {text}"
"""3.11: ``{text}`` is the input with surrounding whitespace removed."""

# --- 3.13 namespaces
# -------------------------------------------------------------------------

NAMESPACE_INVALID: Final = (
    "Invalid namespace format: Invalid namespace format '{text}'. "
    "Expected 'tenant::package::workflow::task'"
)
"""3.13: ``TaskNamespace.from_string`` without exactly four ``::``-separated parts."""

# --- 3.15 retry objects
# ------------------------------------------------------------------------

RETRY_NEGATIVE_DELAY: Final = (
    "{name} must be a finite number of seconds >= 0, got {value}"
)
"""3.15: negative or non-finite delays for ``RetryPolicyBuilder`` (ours)."""

RETRY_ARGUMENT_TYPE: Final = "{name} must be {expected}, not {type}"
"""3.15: a retry-object argument of the wrong type (ours; ``TypeError``)."""

RETRY_ARGUMENT_RANGE: Final = "{name} must be between 0 and {limit}, got {value}"
"""3.15: a negative or too large attempt count (ours; ``OverflowError``)."""

# --- 3.16 DatabaseAdmin
# -------------------------------------------------------------------------

ADMIN_REQUIRES_POSTGRES: Final = (
    "DatabaseAdmin requires a PostgreSQL connection. SQLite does not support database "
    "schemas or user management. Use a PostgreSQL URL like 'postgres://user:pass@host/db'"
)
"""3.16: ``DatabaseAdmin`` with a non-PostgreSQL URL (``RuntimeError``)."""

ADMIN_INVALID_URL: Final = "Invalid database URL: {reason}"
"""3.16: ``DatabaseAdmin`` with an unparsable URL (prefix normative)."""

ADMIN_DATABASE_NAME_REQUIRED: Final = "Database name is required in URL path"
"""3.16: ``DatabaseAdmin`` URL without a database name."""

CREATE_TENANT_FAILED: Final = "Failed to create tenant: {reason}"
"""3.16: prefix of ``create_tenant`` failures."""

TENANT_SCHEMA_EMPTY: Final = "Invalid configuration: Schema name cannot be empty"
"""3.16: ``create_tenant`` reason for an empty ``schema_name``."""

TENANT_USERNAME_EMPTY: Final = "Invalid configuration: Username cannot be empty"
"""3.16: ``create_tenant`` reason for an empty ``username``."""

REMOVE_TENANT_FAILED: Final = "Failed to remove tenant: {reason}"
"""3.16: prefix of ``remove_tenant`` failures."""

# --- 4.x runtime
# ----------------------------------------------------------------------------

TASK_EXECUTION_FAILED_PREFIX: Final = "Python task execution failed: "
"""4.4: prefix of the error text of an attempt whose function raised."""

TASK_EXECUTION_FAILED: Final = TASK_EXECUTION_FAILED_PREFIX + "{type}: {message}"
"""4.4: ``{type}`` is the exception's type name, ``{message}`` its ``str()``."""

TASK_TIMEOUT: Final = "Task timeout after {seconds}s"
"""4.8: error text of a timed-out attempt (ours).

It MUST contain ``timeout``: 4.7 classifies timeouts as transient and the transient
condition matches on the error text.
"""

CALLBACK_FAILED: Final = (
    "[cloaca] {callback} callback failed for task '{task_id}': {type}: {message}"
)
"""4.9: stderr line of a failed callback; ``{callback}``: on_success/on_failure."""

TRANSIENT_ERROR_KEYWORDS: Final = (
    "timeout",
    "connection",
    "network",
    "temporary",
    "unavailable",
)
"""4.7: lower-case fragments that make an error text transient."""

TRIGGER_RULES_NOT_SATISFIED: Final = "Trigger rules not satisfied"
"""4.10: skip reason of a task whose trigger rule is false."""

RECOVERY_EXCEEDED: Final = "ABANDONED: Exceeded recovery attempts"
"""4.14: error of an orphaned task recovered too often."""

RECOVERY_WORKFLOW_GONE_TASK: Final = (
    "ABANDONED: Workflow '{name}' no longer available in registry"
)
"""4.14: error of an orphaned task whose workflow is not registered."""

RECOVERY_WORKFLOW_GONE: Final = (
    "Workflow '{name}' no longer available - abandoned during recovery"
)
"""4.6/4.14: execution error when its workflow is not registered at recovery."""

RECOVERY_TASK_ABANDONED: Final = "Task abandonment caused pipeline failure"
"""4.6: execution error when one of its tasks was abandoned by recovery."""

TASK_NOT_FOUND: Final = "Task not found: {namespace}"
"""4.14: error of an attempt whose function is not registered in this process."""

CRON_SCHEDULE_NOT_FOUND: Final = "Cron schedule not found: {value}"
"""3.9.4: ``get_cron_schedule`` / ``update_cron_schedule`` of an unknown id."""

SCHEDULE_ARGUMENT_NEGATIVE: Final = "{owner} argument '{name}' must not be negative"
"""3.9.4-3.9.5: a negative ``limit`` / ``offset`` (unsigned in the reference)."""
