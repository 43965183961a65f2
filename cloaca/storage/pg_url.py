"""PostgreSQL URLs: ``postgres[ql]://user:password@host:port/database?options``.

``parse_postgres_url`` turns a URL into the explicit connection arguments asyncpg
takes, so that what we connect to is exactly what the URL says (API.md section 0
item 10: the database is the one named in the URL) and every error message can
name host, port and database with the password masked. Query options passed
through (API.md 4.15): ``sslmode`` (asyncpg's ``ssl`` modes), ``connect_timeout``
(seconds, asyncpg's ``timeout``) and ``application_name`` (a server setting).
Other options are ignored, like unknown SQLite URL options, and logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import structlog

from cloaca.storage.urls import InvalidDatabaseUrl, mask_password

__all__ = ("DEFAULT_PORT", "PostgresTarget", "parse_postgres_url")

logger = structlog.get_logger(__name__)

DEFAULT_PORT: Final = 5432
_SCHEMES: Final = ("postgres", "postgresql")
_SSLMODES: Final = frozenset(
    {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
)


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where and how to connect, parsed from a PostgreSQL URL.

    Attributes:
        host: Host name or address (``localhost`` when the URL names none).
        port: TCP port (5432 by default).
        user: Login role, or None for the driver default.
        password: Password, or None.
        database: Database name, or None when the URL path names none.
        ssl: asyncpg ``ssl`` mode from ``sslmode``, or None.
        connect_timeout: Seconds allowed for connecting, or None.
        server_settings: Session settings sent at connection start-up.
        query: The URL's query string, kept for URLs derived from this one.
        display_url: The URL with its password masked, for messages.
    """

    host: str
    port: int
    user: str | None
    password: str | None
    database: str | None
    ssl: str | None = None
    connect_timeout: float | None = None
    server_settings: dict[str, str] = field(default_factory=dict)
    query: str = ""
    display_url: str = ""

    @property
    def location(self) -> str:
        """``host:port/database`` for messages (the database may be the default)."""
        return f"{self.host}:{self.port}/{self.database or self.user or ''}"

    def connect_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``asyncpg.connect`` / ``asyncpg.create_pool``."""
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }
        if self.ssl is not None:
            kwargs["ssl"] = self.ssl
        if self.connect_timeout is not None:
            kwargs["timeout"] = self.connect_timeout
        return kwargs

    def with_credentials(self, user: str, password: str) -> str:
        """A URL for the same host, port, database and options, as another role.

        Args:
            user: The login role.
            password: Its password.

        Returns:
            ``postgresql://user:password@host:port/database[?query]``, with the
            user and password percent-encoded.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        url = (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@{host}:{self.port}/{quote(self.database or '', safe='')}"
        )
        return f"{url}?{self.query}" if self.query else url


def parse_postgres_url(url: str) -> PostgresTarget:
    """Parse a PostgreSQL URL.

    Args:
        url: ``postgres://`` or ``postgresql://`` URL.

    Returns:
        The connection target.

    Raises:
        InvalidDatabaseUrl: Another scheme, an unparsable URL (bad port, bad
            IPv6 brackets) or an invalid option value. The message names the
            URL with its password masked.
    """
    display = mask_password(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidDatabaseUrl(
            f"invalid PostgreSQL URL {display}: {exc}", url=display
        ) from exc
    if parts.scheme not in _SCHEMES:
        raise InvalidDatabaseUrl(
            f"not a PostgreSQL URL (postgres:// or postgresql://): {display}",
            url=display,
        )
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if "/" in path:
        raise InvalidDatabaseUrl(
            f"invalid PostgreSQL URL {display}: the path must be one database name",
            url=display,
        )
    ssl: str | None = None
    timeout: float | None = None
    settings: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "sslmode":
            if value not in _SSLMODES:
                raise InvalidDatabaseUrl(
                    f"invalid sslmode {value!r} in {display} "
                    f"(one of {', '.join(sorted(_SSLMODES))})",
                    url=display,
                )
            ssl = value
        elif key == "connect_timeout":
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not timeout > 0:
                raise InvalidDatabaseUrl(
                    f"invalid connect_timeout {value!r} in {display} "
                    "(a positive number of seconds)",
                    url=display,
                )
        elif key == "application_name":
            settings["application_name"] = value
        else:
            logger.info("storage.postgres.url_option_ignored", option=key, url=display)
    return PostgresTarget(
        host=parts.hostname or "localhost",
        port=port or DEFAULT_PORT,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=path or None,
        ssl=ssl,
        connect_timeout=timeout,
        server_settings=settings,
        query=parts.query,
        display_url=display,
    )
