"""Context merge rules of API.md 4.5: how dependency outputs become a task's input.

Outputs of the dependencies that completed successfully are folded one at a time,
in ascending task-name order (API.md section 0 item 14), into an accumulator that
starts empty: a new key is copied; two lists are unioned (existing elements first,
then new ones not already present, by deep equality); two dicts merge recursively;
anything else is replaced by the value folded in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def merge_into(target: dict[str, Any], incoming: Mapping[str, Any]) -> None:
    """Fold ``incoming`` into ``target`` in place, per API.md 4.5."""
    for key, value in incoming.items():
        if key not in target:
            target[key] = value
            continue
        current = target[key]
        if isinstance(current, list) and isinstance(value, list):
            # Deep equality through ==; JSON values compare structurally.
            target[key] = current + [item for item in value if item not in current]
        elif isinstance(current, dict) and isinstance(value, dict):
            merged = dict(current)
            merge_into(merged, value)
            target[key] = merged
        else:
            target[key] = value


def merge_outputs(outputs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge dependency outputs, already given in ascending task-name order."""
    result: dict[str, Any] = {}
    for output in outputs:
        merge_into(result, output)
    return result
