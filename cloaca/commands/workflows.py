"""``cloaca workflows list`` and ``cloaca graph WORKFLOW``: registered workflows.

Workflows live in the process-global registry (API.md 4.1), so both sub-commands
first import the modules named by ``--workflows``. ``graph`` draws a workflow's DAG
as Mermaid (``flowchart TD``), Graphviz DOT, indented text with each task's level
and dependencies, or JSON. Task labels are the short task ids; the full namespace
strings are in the JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any, Final

from cloaca import registry
from cloaca.commands.common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_json_option,
    add_workflows_option,
    load_workflows,
    print_json,
)
from cloaca.commands.render import table
from cloaca.workflow import WorkflowGraph, graph_of

__all__ = ("FORMATS", "add_parsers", "graph_json", "render_graph", "require_workflow")

FORMATS: Final = ("text", "mermaid", "dot", "json")


def add_parsers(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register ``workflows list`` and ``graph``."""
    group = subparsers.add_parser(
        "workflows",
        help="registered workflows",
        description="List the workflows the given modules register.",
    )
    commands = group.add_subparsers(dest="workflows_command", metavar="COMMAND")
    commands.required = True
    listing = commands.add_parser(
        "list",
        parents=[parent],
        help="name, tasks, version, description",
        description="List the workflows the given modules register.",
    )
    add_workflows_option(listing, required=True)
    add_json_option(listing)
    listing.set_defaults(func=list_command)

    graph = subparsers.add_parser(
        "graph",
        parents=[parent],
        help="draw a workflow's DAG",
        description="Draw the DAG of a registered workflow.",
    )
    graph.add_argument("workflow", metavar="WORKFLOW", help="the workflow's name")
    add_workflows_option(graph, required=True)
    graph.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (levels and dependencies), mermaid, dot or json (default: text)",
    )
    graph.set_defaults(func=graph_command)


def require_workflow(name: str) -> WorkflowGraph:
    """The graph of registered workflow ``name``.

    Raises:
        CommandError: No such workflow (``EXIT_USAGE``), listing the known ones.
    """
    workflow = registry.get_workflow(name)
    if workflow is None:
        known = ", ".join(registry.workflow_names()) or "none"
        raise CommandError(
            f"unknown workflow {name!r} (registered: {known}); "
            "load the module defining it with --workflows",
            EXIT_USAGE,
        )
    return graph_of(workflow)


def _short(task_name: str) -> str:
    return task_name.rsplit("::", 1)[-1]


def _levels(graph: WorkflowGraph) -> dict[str, int]:
    levels: dict[str, int] = {}
    for name in graph.task_names:  # topological: dependencies come first
        deps = graph.dependencies.get(name, ())
        levels[name] = 1 + max((levels[d] for d in deps), default=-1)
    return levels


def _edges(graph: WorkflowGraph) -> list[tuple[str, str]]:
    return [
        (dep, name)
        for name in graph.task_names
        for dep in graph.dependencies.get(name, ())
    ]


def _mermaid(graph: WorkflowGraph) -> list[str]:
    ids = {name: f"t{i}" for i, name in enumerate(graph.task_names)}
    lines = ["flowchart TD"]
    for name in graph.task_names:
        label = _short(name).replace('"', "#quot;")
        lines.append(f'    {ids[name]}["{label}"]')
    lines += [f"    {ids[a]} --> {ids[b]}" for a, b in _edges(graph)]
    return lines


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(graph: WorkflowGraph) -> list[str]:
    lines = [f"digraph {_dot_quote(graph.name)} {{", "    rankdir=TB;"]
    lines += [f"    {_dot_quote(_short(n))};" for n in graph.task_names]
    lines += [
        f"    {_dot_quote(_short(a))} -> {_dot_quote(_short(b))};"
        for a, b in _edges(graph)
    ]
    lines.append("}")
    return lines


def _text(graph: WorkflowGraph) -> list[str]:
    levels = _levels(graph)
    count = len(graph.task_names)
    lines = [
        f"workflow {graph.name}  version {graph.version}  "
        f"{count} task{'s' if count != 1 else ''}"
    ]
    if graph.description:
        lines.append(f"  {graph.description}")
    order = sorted(graph.task_names, key=lambda n: (levels[n], n))
    width = max(len(_short(n)) for n in order)
    for name in order:
        deps = graph.dependencies.get(name, ())
        line = f"  [{levels[name]}] {_short(name).ljust(width)}"
        if deps:
            line += "  <- " + ", ".join(_short(d) for d in deps)
        lines.append(line.rstrip())
    return lines


def graph_json(graph: WorkflowGraph) -> dict[str, Any]:
    """A workflow's DAG as a JSON object."""
    levels = _levels(graph)
    deps: Mapping[str, tuple[str, ...]] = graph.dependencies
    return {
        "workflow": graph.name,
        "version": graph.version,
        "tenant": graph.tenant,
        "description": graph.description,
        "tasks": [
            {
                "task": _short(n),
                "task_name": n,
                "level": levels[n],
                "dependencies": [_short(d) for d in deps.get(n, ())],
            }
            for n in graph.task_names
        ],
        "edges": [[_short(a), _short(b)] for a, b in _edges(graph)],
    }


def render_graph(graph: WorkflowGraph, fmt: str) -> str:
    """``graph`` in format ``fmt`` (one of ``FORMATS``), without a final newline."""
    if fmt == "mermaid":
        return "\n".join(_mermaid(graph))
    if fmt == "dot":
        return "\n".join(_dot(graph))
    if fmt == "json":
        return json.dumps(graph_json(graph), indent=2, ensure_ascii=False)
    return "\n".join(_text(graph))


def list_command(args: argparse.Namespace) -> int:
    """``cloaca workflows list``."""
    load_workflows(args.workflows)
    graphs = [require_workflow(name) for name in registry.workflow_names()]
    if args.json:
        print_json([graph_json(g) for g in graphs])
        return EXIT_OK
    if not graphs:
        print("no workflows registered by " + ", ".join(args.workflows))
        return EXIT_OK
    rows = [
        [g.name, str(len(g.task_names)), g.version, g.description or ""] for g in graphs
    ]
    lines = table(
        ["NAME", "TASKS", "VERSION", "DESCRIPTION"],
        rows,
        max_widths=[None, None, None, 60],
    )
    print("\n".join(lines))
    return EXIT_OK


def graph_command(args: argparse.Namespace) -> int:
    """``cloaca graph WORKFLOW``."""
    load_workflows(args.workflows)
    print(render_graph(require_workflow(args.workflow), args.format))
    return EXIT_OK
