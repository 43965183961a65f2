"""Named SQL blocks: the loader for a backend's ``queries.sql`` (CONVENTIONS.md 6).

Each backend keeps its statements in ``cloaca/storage/sql/<backend>/queries.sql`` as
named blocks::

    -- name: insert_context
    -- One immutable context snapshot (SCHEMA.md 3, contexts).
    INSERT INTO contexts (id, value, created_at, updated_at) VALUES (?, ?, ?, ?)

A ``-- name: <identifier>`` header opens a block; the ``--`` lines right after it
describe the statement and are dropped; everything up to the next header is the
statement. Comment lines before the first header document the file. The file is
read once per process and handed out as ``dict[str, LiteralString]``: the text is
package data, never built from user input, so it is typed as a literal.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import LiteralString

__all__ = ("QUERIES_FILE", "load_queries", "parse_queries")

QUERIES_FILE = "queries.sql"
"""The file name of a backend's named statements, under ``sql/<backend>/``."""

_HEADER = re.compile(r"^--\s*name:\s*(?P<name>\S*)\s*$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def parse_queries(text: str, *, source: str = "<string>") -> dict[str, LiteralString]:
    """Parse named SQL blocks.

    Args:
        text: The content of a ``queries.sql`` file.
        source: Where the text came from, for error messages.

    Returns:
        Statement text by name, in file order, stripped of surrounding blank lines
        and of the description comments that follow each header.

    Raises:
        ValueError: A malformed file (a statement before the first header, an
            invalid or repeated name, an empty statement), naming ``source`` and
            the line.
    """
    queries: dict[str, LiteralString] = {}
    name: str | None = None
    header_line = 0
    body: list[str] = []
    in_description = False

    def finish() -> None:
        if name is None:
            return
        statement = "\n".join(body).strip()
        if not statement:
            raise ValueError(f"{source}:{header_line}: query {name!r} has no statement")
        # Package data, never user input, hence typed as a literal (mypy treats
        # LiteralString as str, so no cast is needed).
        queries[name] = statement

    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line.strip())
        if header is not None:
            finish()
            candidate = header.group("name")
            if not _NAME.match(candidate):
                raise ValueError(
                    f"{source}:{number}: invalid query name {candidate!r} "
                    "(lower-case letters, digits and underscores)"
                )
            if candidate in queries:
                raise ValueError(f"{source}:{number}: query {candidate!r} repeated")
            name, header_line, body, in_description = candidate, number, [], True
            continue
        stripped = line.strip()
        if name is None:
            if stripped and not stripped.startswith("--"):
                raise ValueError(
                    f"{source}:{number}: SQL before the first '-- name:' header"
                )
            continue
        if in_description and stripped.startswith("--"):
            continue
        if stripped:
            in_description = False
        body.append(line.rstrip())
    finish()
    return queries


@functools.cache
def load_queries(backend: str) -> dict[str, LiteralString]:
    """Load ``sql/<backend>/queries.sql`` from the package, once per process.

    Args:
        backend: The backend folder name (``"sqlite"`` or ``"postgres"``).

    Returns:
        The parsed statements (shared: callers must not modify the mapping).

    Raises:
        ValueError: The file is malformed (see ``parse_queries``).
        FileNotFoundError: The backend has no ``queries.sql``.
    """
    path = resources.files("cloaca.storage").joinpath("sql", backend, QUERIES_FILE)
    return parse_queries(
        path.read_text(encoding="utf-8"), source=f"sql/{backend}/{QUERIES_FILE}"
    )
