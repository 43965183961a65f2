"""Exception classes (API.md section 0 item 4) and smoke-test helpers (3.1-3.2)."""

from __future__ import annotations

import pytest

import cloaca
from cloaca import errors

DOCUMENTED = {
    "WorkflowError": (),
    "WorkflowValidationError": (ValueError,),
    "WorkflowExecutionError": (ValueError,),
    "WorkflowTimeoutError": (ValueError,),
    "TaskError": (),
    "TaskValidationError": (ValueError,),
    "TaskExecutionError": (ValueError,),
    "TaskTimeoutError": (ValueError,),
    "ContextError": (),
    "ConfigurationError": (),
    "DatabaseError": (),
    "MigrationError": (),
}


@pytest.mark.parametrize(("name", "builtins"), DOCUMENTED.items())
def test_documented_classes(name: str, builtins: tuple[type[Exception], ...]) -> None:
    cls = getattr(cloaca, name)
    assert issubclass(cls, cloaca.CloacaError)
    assert issubclass(cls, Exception)
    for builtin in builtins:
        assert issubclass(cls, builtin)


def test_hierarchy() -> None:
    assert issubclass(cloaca.WorkflowValidationError, cloaca.WorkflowError)
    assert issubclass(cloaca.TaskTimeoutError, cloaca.TaskError)
    assert issubclass(cloaca.MigrationError, cloaca.DatabaseError)


@pytest.mark.parametrize(
    ("cls", "parent", "builtin"),
    [
        (errors.ContextKeyError, cloaca.ContextError, KeyError),
        (errors.ContextValueError, cloaca.ContextError, ValueError),
        (errors.ContextTypeError, cloaca.ContextError, TypeError),
        (errors.ConfigurationTypeError, cloaca.ConfigurationError, TypeError),
        (errors.ConfigurationOverflowError, cloaca.ConfigurationError, OverflowError),
        (errors.ConfigurationValueError, cloaca.ConfigurationError, ValueError),
        (errors.DatabaseValueError, cloaca.DatabaseError, ValueError),
        (errors.DatabaseRuntimeError, cloaca.DatabaseError, RuntimeError),
        (errors.MigrationValueError, cloaca.MigrationError, ValueError),
        (errors.MigrationRuntimeError, cloaca.MigrationError, RuntimeError),
        (errors.TaskTypeError, cloaca.TaskError, TypeError),
        (errors.TaskOverflowError, cloaca.TaskError, OverflowError),
        (errors.WorkflowTypeError, cloaca.WorkflowError, TypeError),
    ],
)
def test_internal_mixes(cls: type, parent: type, builtin: type) -> None:
    assert issubclass(cls, parent)
    assert issubclass(cls, builtin)
    assert not hasattr(cloaca, cls.__name__)


def test_context_key_error_str_is_the_message() -> None:
    exc = errors.ContextKeyError("Key not found: 'k'")
    assert str(exc) == "Key not found: 'k'"
    assert str(KeyError("Key not found: 'k'")) != str(exc)


def test_hello() -> None:
    assert cloaca.hello_world() == "Hello from Cloaca backend!"
    h = cloaca.HelloClass()
    assert h.get_message() == "Hello from HelloClass!"
    assert repr(h) == "HelloClass(message='Hello from HelloClass!')"
