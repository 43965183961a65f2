"""PipelineResult (being written; see the runtime issue)."""

from __future__ import annotations


class PipelineResult:
    """Result of ``DefaultRunner.execute()`` (API.md 3.10)."""
