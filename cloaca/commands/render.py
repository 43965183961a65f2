"""Plain-text tables and the execution timeline, for people reading a terminal.

Pure functions from rows to lines, ASCII only so that any terminal, pager or log
file shows them the same. A table is left-aligned columns two spaces apart, with
over-long cells shortened at the end (``...``). A timeline draws one bar per task
on an axis shared by the whole execution, so where the time went and what failed
show at a glance::

               0s                                       2.41s
    extract    |####                                    |  520ms  Completed
    transform  |    ###################                 |  1.20s  Completed
    load       |                       XXXX             |  300ms  Failed
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cloaca.commands.common import format_duration

__all__ = ("BAR_MARKS", "Bar", "shorten", "table", "timeline")

BAR_MARKS: Final = {"Completed": "#", "Failed": "X", "Running": ">"}
"""The character a bar is drawn with, by task state (others: ``?``)."""


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with ``...`` at the end."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    return flat[: max(0, width - 3)] + "..."


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    max_widths: Sequence[int | None] | None = None,
) -> list[str]:
    """Rows under headers, columns aligned.

    Args:
        headers: Column titles.
        rows: Cells as text, one sequence per row, as long as ``headers``.
        max_widths: Per column, the most characters a cell keeps (None: no limit).

    Returns:
        The lines, without trailing spaces.
    """
    limits = list(max_widths or [None] * len(headers))
    cells = [
        [
            cell if limit is None else shorten(cell, limit)
            for cell, limit in zip(row, limits, strict=True)
        ]
        for row in rows
    ]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *cells]:
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        lines.append(line.rstrip())
    return lines


@dataclass(frozen=True, slots=True)
class Bar:
    """One task on the timeline.

    Attributes:
        label: The task id.
        status: Its state (``Completed``, ``Failed``, ``Running``, ...).
        start: Seconds after the execution started, or None if it never ran.
        end: Seconds after the execution started (for a running task: now), or
            None if it never ran.
    """

    label: str
    status: str
    start: float | None
    end: float | None


def _span(bar: Bar, total: float, width: int) -> tuple[int, int] | None:
    if bar.start is None or bar.end is None:
        return None
    if total <= 0:
        return 0, 1
    first = min(width - 1, max(0, math.floor(bar.start / total * width)))
    last = min(width, max(first + 1, math.ceil(bar.end / total * width)))
    return first, last


def timeline(bars: Sequence[Bar], total: float, *, width: int = 40) -> list[str]:
    """One bar per task on a shared time axis from 0 to ``total`` seconds.

    Args:
        bars: The tasks, in the order they should be listed.
        total: Length of the axis in seconds (the execution's duration so far).
        width: Characters between the two ``|`` of a bar.

    Returns:
        An axis line, one line per task (bar, duration, state), and a legend.
    """
    width = max(10, width)
    label_width = max([len(b.label) for b in bars] + [4])
    left, right = "0s", format_duration(total)
    axis = left + " " * max(1, width + 2 - len(left) - len(right)) + right
    lines = [" " * (label_width + 2) + axis]
    for bar in bars:
        row = [" "] * width
        span = _span(bar, total, width)
        if span is None:
            note = "not run" if bar.status != "Skipped" else "skipped"
            duration = "-"
        else:
            mark = BAR_MARKS.get(bar.status, "?")
            row[span[0] : span[1]] = mark * (span[1] - span[0])
            assert bar.start is not None
            assert bar.end is not None
            duration = format_duration(bar.end - bar.start)
            note = bar.status
        lines.append(
            f"{bar.label.ljust(label_width)}  |{''.join(row)}|  "
            f"{duration.rjust(6)}  {note}"
        )
    lines.append(
        " " * (label_width + 2)
        + "  ".join(f"{mark} {state.lower()}" for state, mark in BAR_MARKS.items())
    )
    return lines
