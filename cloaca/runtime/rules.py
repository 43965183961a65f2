"""Trigger rules of API.md 4.10, evaluated once a task's dependencies are terminal.

Python tasks always carry ``{"type": "Always"}``; rows written by Cloacina may carry
the engine's richer rule language, so a taken-over execution is resumed with the
rules it was stored with. A rule that cannot be parsed counts as ``Always``
(0.3.1 data is read as stored, never rejected).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

SKIP_REASON = "Trigger rules not satisfied"
"""``error_details`` of a task skipped by its rule (SCHEMA.md 5 step 3)."""

_ALWAYS: Mapping[str, Any] = {"type": "Always"}


def parse_rule(text: str | None) -> Mapping[str, Any]:
    """Decode a stored ``trigger_rules`` value; unknown shapes mean ``Always``."""
    if not text:
        return _ALWAYS
    try:
        rule = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return _ALWAYS
    return rule if isinstance(rule, dict) else _ALWAYS


def is_always(rule: Mapping[str, Any]) -> bool:
    """True for the rule every Python task carries."""
    return bool(rule.get("type", "Always") == "Always")


def evaluate(
    rule: Mapping[str, Any],
    statuses: Mapping[str, str],
    context: Mapping[str, Any],
) -> bool:
    """Evaluate ``rule`` against task ``statuses`` (by full name) and the input."""
    kind = rule.get("type", "Always")
    if kind == "Always":
        return True
    conditions = rule.get("conditions") or []
    results = (_condition(c, statuses, context) for c in conditions)
    if kind == "All":
        return all(results)
    if kind == "Any":
        return any(results)
    if kind == "None":
        return not any(results)
    return True


_STATUS_OF = {
    "TaskSuccess": "Completed",
    "TaskFailed": "Failed",
    "TaskSkipped": "Skipped",
}


def _condition(
    condition: Any, statuses: Mapping[str, str], context: Mapping[str, Any]
) -> bool:
    if not isinstance(condition, dict):
        return False
    kind = condition.get("type")
    if kind in _STATUS_OF:
        return statuses.get(condition.get("task_name", "")) == _STATUS_OF[kind]
    if kind == "ContextValue":
        return _compare(condition, context)
    return False


def _compare(condition: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    key = condition.get("key", "")
    operator = condition.get("operator")
    expected = condition.get("value")
    present = key in context
    actual = context.get(key)
    if operator == "Exists":
        return present
    if operator == "NotExists":
        return not present
    if operator == "Equals":
        return present and actual == expected
    if operator == "NotEquals":
        return not present or actual != expected
    numbers = (int, float)
    if operator in ("GreaterThan", "LessThan"):
        if not (isinstance(actual, numbers) and isinstance(expected, numbers)):
            return False
        if isinstance(actual, bool) or isinstance(expected, bool):
            return False
        return actual > expected if operator == "GreaterThan" else actual < expected
    if operator in ("Contains", "NotContains"):
        if (isinstance(actual, str) and isinstance(expected, str)) or isinstance(
            actual, list
        ):
            contained = expected in actual
        else:
            contained = False
        return contained if operator == "Contains" else not contained
    return False
