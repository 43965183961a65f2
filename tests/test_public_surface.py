"""The public surface: ``__all__``, shadowing, import direction and lazy drivers.

``cloaca.__all__`` is API.md 1.2's 21 reference names plus the extensions of API.md
section 0 (``AsyncRunner``, the 13 documented exception classes). Interpreter-level
facts (what an import loads) are checked in fresh subprocesses.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import cloaca

REFERENCE_NAMES = {
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
}
EXCEPTIONS = {
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
}
EXTENSIONS = {"AsyncRunner"} | EXCEPTIONS


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def test_all_lists_exactly_the_reference_names_and_extensions() -> None:
    assert len(cloaca.__all__) == len(set(cloaca.__all__)) == 35
    assert set(cloaca.__all__) == REFERENCE_NAMES | EXTENSIONS


def test_every_exported_name_resolves() -> None:
    for name in cloaca.__all__:
        assert getattr(cloaca, name) is not None, name


def test_exceptions_are_cloaca_errors() -> None:
    for name in EXCEPTIONS:
        cls = getattr(cloaca, name)
        assert isinstance(cls, type)
        assert issubclass(cls, cloaca.CloacaError)


def test_version_and_absent_names() -> None:
    assert cloaca.__version__ == "0.3.1"
    assert "get_backend" not in cloaca.__all__
    assert "__backend__" not in cloaca.__all__
    for name in (
        "PipelineStatus",
        "CronSchedule",
        "CloacaException",
        "_workflow_registry",
    ):
        assert not hasattr(cloaca, name), name


def test_task_and_trigger_are_the_decorator_factories() -> None:
    # cloaca/task.py and cloaca/trigger.py exist as submodules: the package attribute
    # must still be the function __init__ exported.
    assert callable(cloaca.task)
    assert not isinstance(cloaca.task, type(sys))
    assert not isinstance(cloaca.trigger, type(sys))


def test_importing_every_submodule_shadows_no_public_name() -> None:
    out = run_python(
        """
        import importlib, json, pkgutil
        import cloaca
        before = {n: id(getattr(cloaca, n)) for n in cloaca.__all__}
        failed = []
        for info in pkgutil.walk_packages(cloaca.__path__, "cloaca."):
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # a module that fails to load shadows nothing;
                failed.append(f"{info.name}: {exc!r}")  # its own tests report it
        changed = [n for n in cloaca.__all__ if id(getattr(cloaca, n)) != before[n]]
        print(json.dumps({"changed": changed, "failed": failed}))
        """
    )
    result = json.loads(out)
    assert result["changed"] == []


def test_import_cloaca_loads_no_database_driver() -> None:
    out = run_python(
        """
        import sys
        import cloaca
        print(sorted(m for m in sys.modules
                     if m.split(".")[0] in {"asyncpg", "aiosqlite", "sqlite3"}))
        """
    )
    assert out.strip() == "[]"


def test_import_actors_loads_no_cloaca_module() -> None:
    out = run_python(
        """
        import sys
        import actors
        print(sorted(m for m in sys.modules if m.split(".")[0] == "cloaca"))
        """
    )
    assert out.strip() == "[]"


def test_internal_packages_export_nothing() -> None:
    for name in ("cloaca.runtime", "cloaca.storage"):
        module = importlib.import_module(name)
        assert module.__all__ == (), name
