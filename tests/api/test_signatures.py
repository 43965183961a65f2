"""Introspected signatures user code relies on (API.md conventions, 3.9.1)."""

from __future__ import annotations

import inspect

import cloaca


def names(fn: object) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]  # type: ignore[arg-type]


def test_with_schema_signature_is_exactly_the_references() -> None:
    assert (
        str(inspect.signature(cloaca.DefaultRunner.with_schema))
        == "(database_url, schema)"
    )


def test_runner_parameter_names() -> None:
    assert names(cloaca.DefaultRunner.__init__) == ["database_url"]
    assert names(cloaca.DefaultRunner.with_config) == ["database_url", "config"]
    assert names(cloaca.DefaultRunner.execute) == ["workflow_name", "context"]
    assert names(cloaca.DefaultRunner.register_cron_workflow) == [
        "workflow_name",
        "cron_expression",
        "timezone",
    ]
    assert names(cloaca.AsyncRunner.execute) == ["workflow_name", "context"]
