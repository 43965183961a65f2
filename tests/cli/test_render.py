"""Tables and the execution timeline: exact lines for known inputs."""

from __future__ import annotations

from cloaca.commands.common import format_duration
from cloaca.commands.render import Bar, shorten, table, timeline


def test_table_aligns_columns_and_shortens_cells() -> None:
    lines = table(
        ["TASK", "ERROR"],
        [["extract", ""], ["transform", "x" * 30]],
        max_widths=[None, 10],
    )
    assert lines == [
        "TASK       ERROR",
        "extract",
        "transform  xxxxxxx...",
    ]


def test_shorten_flattens_lines() -> None:
    assert shorten("a\nb   c", 10) == "a b c"
    assert shorten("abcdefghijk", 8) == "abcde..."


def test_timeline_draws_bars_on_a_shared_axis() -> None:
    bars = [
        Bar(label="extract", status="Completed", start=0.0, end=1.0),
        Bar(label="load", status="Failed", start=1.0, end=2.0),
        Bar(label="report", status="Running", start=2.0, end=4.0),
        Bar(label="skipped", status="Skipped", start=None, end=None),
        Bar(label="waiting", status="NotStarted", start=None, end=None),
    ]
    lines = timeline(bars, 4.0, width=20)
    assert lines == [
        "         0s               4.00s",
        "extract  |#####               |   1.00s  Completed",
        "load     |     XXXXX          |   1.00s  Failed",
        "report   |          >>>>>>>>>>|   2.00s  Running",
        "skipped  |                    |       -  skipped",
        "waiting  |                    |       -  not run",
        "         # completed  X failed  > running",
    ]


def test_timeline_shows_instant_tasks() -> None:
    lines = timeline([Bar(label="t", status="Completed", start=0.0, end=0.0)], 0.0)
    assert "|#" in lines[1]
    tiny = timeline(
        [
            Bar(label="a", status="Completed", start=0.0, end=10.0),
            Bar(label="b", status="Completed", start=10.0, end=10.001),
        ],
        10.001,
        width=10,
    )
    assert tiny[2].count("#") == 1


def test_durations_read_naturally() -> None:
    assert [format_duration(s) for s in (None, 0.0123, 2.5, 185, 3725)] == [
        "-",
        "12ms",
        "2.50s",
        "3m05s",
        "1h02m",
    ]
