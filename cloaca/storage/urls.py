"""Database URLs: backend detection, SQLite locations, password masking (API.md 4.15).

``detect_backend`` applies API.md 4.15's first-match table. ``parse_sqlite_url``
turns a SQLite URL into a ``SqliteLocation``: after ``sqlite://`` the text up to an
optional ``?`` is the path, verbatim (three slashes mean an absolute path), with the
query options ``mode``, ``_journal_mode``, ``_synchronous`` and ``_busy_timeout``
parsed (unknown options ignored). ``sqlite://`` alone is a private temporary
database; ``:memory:``, ``sqlite://:memory:`` and ``sqlite:///:memory:`` (API.md
section 0 item 10) are private in-memory databases; ``file:`` URIs are handed to
SQLite as they are. Bare paths (``/x``, ``./x``, ``../x``, ``x.db``) are taken
verbatim, without option parsing. ``mask_password`` hides the password of a
PostgreSQL URL (``user:***@host``) for every message that names a URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl, quote

from cloaca.storage.errors import StorageError

__all__ = (
    "Backend",
    "InvalidDatabaseUrl",
    "SqliteLocation",
    "SqliteMode",
    "detect_backend",
    "mask_password",
    "parse_sqlite_url",
)

Backend = Literal["sqlite", "postgres"]
SqliteMode = Literal["rwc", "rw", "ro", "memory"]

_SQLITE_SCHEME: Final = "sqlite://"
_POSTGRES_PREFIXES: Final = ("postgres://", "postgresql://")
_SQLITE_PREFIXES: Final = (_SQLITE_SCHEME, "file:", "/", "./", "../")
_SQLITE_SUFFIXES: Final = (".db", ".sqlite", ".sqlite3")
_MEMORY_PATHS: Final = frozenset({":memory:", "/:memory:"})
_MODES: Final = frozenset({"rwc", "rw", "ro", "memory"})
_JOURNAL_MODES: Final = frozenset(
    {"DELETE", "TRUNCATE", "PERSIST", "MEMORY", "WAL", "OFF"}
)
_SYNCHRONOUS: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
# scheme://user:password@host: the password runs to the last '@' of the authority.
_PASSWORD: Final = re.compile(
    r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)[^/?#]*(?=@)"
)
# libpq-style drivers also take the password as a query option.
_QUERY_PASSWORD: Final = re.compile(r"(?P<head>[?&]password=)[^&#]*")


class InvalidDatabaseUrl(StorageError):
    """The database URL names no backend cloaca supports, or has invalid options."""


def mask_password(url: str) -> str:
    """The URL with its password replaced by ``***``.

    Args:
        url: Any database URL.

    Returns:
        ``postgres://user:***@host/db`` for a URL with a password (also a
        ``password=`` query option); any other URL unchanged.
    """
    masked = _PASSWORD.sub(r"\g<head>***", url, count=1)
    return _QUERY_PASSWORD.sub(r"\g<head>***", masked)


def detect_backend(url: str) -> Backend:
    """The backend a URL names (API.md 4.15, first match).

    Args:
        url: A database URL.

    Returns:
        ``"postgres"`` or ``"sqlite"``.

    Raises:
        InvalidDatabaseUrl: The URL matches no form of the table, named with its
            password masked.
    """
    if url.startswith(_POSTGRES_PREFIXES):
        return "postgres"
    if url.startswith(_SQLITE_PREFIXES) or url == ":memory:":
        return "sqlite"
    if url.endswith(_SQLITE_SUFFIXES):
        return "sqlite"
    masked = mask_password(url)
    raise InvalidDatabaseUrl(
        f"unsupported database URL {masked!r}: expected postgres://, postgresql://, "
        "sqlite://, file:, a path starting with '/', './' or '../', a file name "
        "ending in .db, .sqlite or .sqlite3, or :memory:",
        url=masked,
    )


@dataclass(frozen=True, slots=True)
class SqliteLocation:
    """Where a SQLite URL points and how to open it.

    Attributes:
        kind: ``file`` (a path), ``memory`` (private in-memory), ``temporary``
            (private temporary file, deleted on close) or ``uri`` (a ``file:``
            URI handed to SQLite as it is).
        path: The file path as written (``file``), or the URI (``uri``);
            empty otherwise.
        mode: ``rwc`` (create if missing, the default), ``rw``, ``ro``;
            ``memory`` for an in-memory database. For a ``file:`` URI it is read
            from the URI, which SQLite applies itself.
        journal_mode: ``_journal_mode`` upper-cased, or None (the store's default).
        synchronous: ``_synchronous`` upper-cased, or None.
        busy_timeout_ms: ``_busy_timeout`` in milliseconds, or None.
    """

    kind: Literal["file", "memory", "temporary", "uri"]
    path: str
    mode: SqliteMode = "rwc"
    journal_mode: str | None = None
    synchronous: str | None = None
    busy_timeout_ms: int | None = None

    @property
    def is_memory(self) -> bool:
        """Whether the database lives in memory (no journal file, no WAL)."""
        if self.kind == "uri":
            target = self.path.removeprefix("file:").partition("?")[0]
            return self.mode == "memory" or target == ":memory:"
        return self.kind == "memory"

    @property
    def is_read_only(self) -> bool:
        """Whether the database is opened read-only (``mode=ro``)."""
        return self.mode == "ro"

    def connect_target(self) -> tuple[str, bool]:
        """What ``sqlite3.connect`` needs.

        Returns:
            ``(database, uri)``: an ``file:`` URI carrying the open mode for a
            file, the URI itself for ``uri``, ``":memory:"`` or ``""``
            (SQLite's private temporary database).
        """
        if self.kind == "memory":
            return ":memory:", False
        if self.kind == "temporary":
            return "", False
        if self.kind == "uri":
            return self.path, True
        # The path is verbatim; percent-encode it so '?', '#' and '%' stay part
        # of the file name inside the URI.
        encoded = quote(self.path, safe="/")
        prefix = "file://" if self.path.startswith("/") else "file:"
        return f"{prefix}{encoded}?mode={self.mode}", True


def _invalid(url: str, problem: str) -> InvalidDatabaseUrl:
    masked = mask_password(url)
    return InvalidDatabaseUrl(f"invalid SQLite URL {masked!r}: {problem}", url=masked)


def _options(url: str, query: str) -> dict[str, str]:
    # Unknown options are ignored (API.md 4.15); the last repetition wins.
    return {
        key: value
        for key, value in parse_qsl(query, keep_blank_values=True)
        if key in ("mode", "_journal_mode", "_synchronous", "_busy_timeout")
    }


def parse_sqlite_url(url: str) -> SqliteLocation:
    """Resolve a SQLite URL (API.md 4.15).

    Args:
        url: A URL for which ``detect_backend`` returns ``"sqlite"``.

    Returns:
        The location and open options.

    Raises:
        InvalidDatabaseUrl: Not a SQLite URL, or an option with an invalid value
            (``mode`` outside ``rwc``/``rw``/``ro``/``memory``, an unknown journal
            or synchronous mode, a busy timeout that is not a non-negative
            integer).
    """
    if detect_backend(url) != "sqlite":
        raise _invalid(url, "not a SQLite URL")
    if url == ":memory:":
        return SqliteLocation(kind="memory", path="", mode="memory")
    if url.startswith("file:"):
        query = url.partition("?")[2]
        return _located(url, SqliteLocation(kind="uri", path=url), _options(url, query))
    if not url.startswith(_SQLITE_SCHEME):
        return SqliteLocation(kind="file", path=url)
    path, _, query = url.removeprefix(_SQLITE_SCHEME).partition("?")
    options = _options(url, query)
    if path in _MEMORY_PATHS or options.get("mode") == "memory":
        location = SqliteLocation(kind="memory", path="", mode="memory")
    elif not path:
        location = SqliteLocation(kind="temporary", path="")
    else:
        location = SqliteLocation(kind="file", path=path)
    return _located(url, location, options)


def _located(
    url: str, location: SqliteLocation, options: dict[str, str]
) -> SqliteLocation:
    mode = options.get("mode", location.mode)
    if mode not in _MODES:
        raise _invalid(url, f"mode must be rwc, rw, ro or memory, not {mode!r}")
    if location.kind in ("memory", "temporary"):
        mode = location.mode
    journal = options.get("_journal_mode")
    if journal is not None:
        journal = journal.upper()
        if journal not in _JOURNAL_MODES:
            raise _invalid(
                url,
                f"_journal_mode must be one of {sorted(_JOURNAL_MODES)}, "
                f"not {journal!r}",
            )
    synchronous = options.get("_synchronous")
    if synchronous is not None:
        synchronous = synchronous.upper()
        if synchronous not in _SYNCHRONOUS:
            raise _invalid(
                url,
                f"_synchronous must be one of {sorted(_SYNCHRONOUS)}, "
                f"not {synchronous!r}",
            )
    busy: int | None = None
    raw_busy = options.get("_busy_timeout")
    if raw_busy is not None:
        if not raw_busy.isdigit():
            raise _invalid(
                url,
                f"_busy_timeout must be milliseconds (an integer), not {raw_busy!r}",
            )
        busy = int(raw_busy)
    return SqliteLocation(
        kind=location.kind,
        path=location.path,
        mode=mode,  # type: ignore[arg-type]  # checked against _MODES above
        journal_mode=journal,
        synchronous=synchronous,
        busy_timeout_ms=busy,
    )
