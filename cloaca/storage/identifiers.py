"""Validation and quoting of the PostgreSQL identifiers a user names: schemas and roles.

Nothing a user passes is ever formatted into SQL text except through
:func:`quote_ident`, and it only accepts names that :func:`schema_name` or
:func:`role_name` validated first. The rules are SCHEMA.md section 8 and API.md
3.9.1 (the stricter engine rules): ASCII letters, digits and ``_``, a letter or
``_`` first, 1-63 characters, not a reserved name in any letter case. Cloacina
writes names unquoted, so PostgreSQL folds them to lower case; we lower-case them
ourselves and then quote them, which names the same object.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ("InvalidIdentifier", "quote_ident", "render", "role_name", "schema_name")

_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}", re.ASCII)

RESERVED_SCHEMAS: Final = frozenset(
    {"public", "pg_catalog", "information_schema", "pg_temp", "pg_toast"}
)
"""Schemas a tenant may never take (SCHEMA.md 8, plus ``pg_toast``)."""

# PostgreSQL refuses these as role names ("role name ... is reserved"), and the
# keywords below cannot be created as roles even when quoted; refusing them up
# front gives one clear message instead of a server error half-way through.
RESERVED_ROLES: Final = frozenset(
    {"public", "none", "current_user", "session_user", "current_role", "user"}
)


class InvalidIdentifier(ValueError):
    """A schema or role name does not satisfy the identifier rules."""


def _validate(kind: str, name: object) -> str:
    if not isinstance(name, str):
        raise InvalidIdentifier(f"{kind} must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidIdentifier(f"{kind} cannot be empty")
    if len(name) > 63:
        raise InvalidIdentifier(
            f"{kind} {name!r} is too long ({len(name)} characters, at most 63)"
        )
    if _PATTERN.fullmatch(name) is None:
        raise InvalidIdentifier(
            f"{kind} {name!r} must contain only ASCII letters, digits and "
            "underscores, and start with a letter or an underscore"
        )
    return name.lower()


def schema_name(name: object) -> str:
    """Validate a tenant schema name and return it lower-cased.

    Args:
        name: The name as the user gave it (``Tenant_A`` names schema ``tenant_a``).

    Returns:
        The folded name, safe to pass to :func:`quote_ident`.

    Raises:
        InvalidIdentifier: The name breaks a rule of SCHEMA.md section 8.
    """
    folded = _validate("Schema name", name)
    if folded in RESERVED_SCHEMAS or folded.startswith("pg_"):
        raise InvalidIdentifier(f"Schema name {name!r} is reserved by PostgreSQL")
    return folded


def role_name(name: object) -> str:
    """Validate a tenant login role name and return it lower-cased.

    Args:
        name: The user name as given (folded like an unquoted identifier).

    Returns:
        The folded name, safe to pass to :func:`quote_ident`.

    Raises:
        InvalidIdentifier: The name breaks the identifier rules or is reserved
            (``public``, ``pg_*`` and the role keywords).
    """
    folded = _validate("Username", name)
    if folded in RESERVED_ROLES or folded.startswith("pg_"):
        raise InvalidIdentifier(f"Username {name!r} is reserved by PostgreSQL")
    return folded


def quote_ident(name: str) -> str:
    """Quote a name that :func:`schema_name` or :func:`role_name` returned.

    Args:
        name: A validated, folded identifier.

    Returns:
        The identifier in double quotes, ready to be placed in SQL text.

    Raises:
        InvalidIdentifier: ``name`` was not validated (defence in depth: the
            check is repeated so that no unvalidated text reaches SQL).
    """
    if _PATTERN.fullmatch(name) is None or name != name.lower():
        raise InvalidIdentifier(f"refusing to quote unvalidated identifier {name!r}")
    return f'"{name}"'


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def render(template: str, **names: str) -> str:
    """Fill ``{placeholder}`` identifiers of a named SQL statement.

    Utility statements (``CREATE SCHEMA``, ``CREATE ROLE``, ``GRANT``) cannot take
    bind parameters for identifiers, so their templates in ``queries.sql`` carry
    ``{schema}``/``{role}`` placeholders and this is the one place they are filled.

    Args:
        template: A statement from ``queries.sql``.
        **names: Validated, folded identifiers by placeholder name.

    Returns:
        The statement with every placeholder replaced by the quoted identifier.

    Raises:
        InvalidIdentifier: A value was not validated.
        KeyError: The template names a placeholder that was not given.
    """
    quoted = {key: quote_ident(value) for key, value in names.items()}
    return _PLACEHOLDER.sub(lambda m: quoted[m.group(1)], template)
