"""Multi-tenant administration on PostgreSQL: ``DatabaseAdmin`` and its value classes.

API.md 3.16 with section 0 item 10 and 4.16. ``DatabaseAdmin(url)`` checks the URL
at construction without connecting; ``create_tenant`` provisions a schema, a login
role limited to it and Cloacina's tables inside it, in one transaction;
``remove_tenant`` takes them away again. Names are validated as identifiers
before any SQL (``cloaca.storage.identifiers``) and folded to lower case as
PostgreSQL folds Cloacina's unquoted names, so the credentials report the names
that actually exist. ``connection_string`` is built from the admin URL's host,
port, database and options with the tenant's credentials. Failures raise
``cloaca.DatabaseError`` that is also a ``RuntimeError`` (API.md 1.4 and section
0 item 4) with the reference's message texts; unlike the reference, an error inside
the transaction is reported, never swallowed. The methods are synchronous; the
driver runs on a private event loop (on a helper thread when the caller's thread
already runs one), and is imported only when a method needs it.
"""

from __future__ import annotations

import string
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, NoReturn, TypeVar

from cloaca import texts
from cloaca.errors import DatabaseRuntimeError

if TYPE_CHECKING:
    from cloaca.storage.pg_url import PostgresTarget

__all__ = ("DatabaseAdmin", "TenantConfig", "TenantCredentials")

_PASSWORD_ALPHABET: Final = string.ascii_letters + string.digits
_PASSWORD_LENGTH: Final = 32
_T = TypeVar("_T")


def _generate_password() -> str:
    import secrets  # on first use: ~10 ms at import time otherwise

    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(_PASSWORD_LENGTH))


def _run(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``work`` to completion on a fresh event loop, from synchronous code."""
    # Imported here: asyncio alone costs ~40 ms, too much for ``import cloaca``.
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def main() -> _T:
        return await work()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    # This thread's loop is busy running the caller; blocking it is unavoidable
    # for a synchronous API, but nesting loops is impossible, so use a thread.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloaca-admin") as pool:
        return pool.submit(asyncio.run, main()).result()


def _require_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


class TenantConfig:
    """What to provision for one tenant (API.md 3.16).

    Args:
        schema_name: The tenant's PostgreSQL schema.
        username: The tenant's login role.
        password: Its password; ``None`` or ``""`` means "generate one".
    """

    __slots__ = ("_password", "_schema_name", "_username")

    def __init__(
        self, schema_name: str, username: str, password: str | None = None
    ) -> None:
        self._schema_name = _require_str(schema_name, "schema_name")
        self._username = _require_str(username, "username")
        self._password = "" if password is None else _require_str(password, "password")

    @property
    def schema_name(self) -> str:
        """The schema name as given."""
        return self._schema_name

    @property
    def username(self) -> str:
        """The role name as given."""
        return self._username

    @property
    def password(self) -> str:
        """The password as given (``""``: one is generated)."""
        return self._password

    def __repr__(self) -> str:
        return (
            f"TenantConfig(schema_name='{self._schema_name}', "
            f"username='{self._username}', password='***')"
        )


class TenantCredentials:
    """The credentials of a provisioned tenant; returned by ``create_tenant``.

    Not user-constructible (API.md 3.16): calling the class raises ``TypeError``.
    """

    __slots__ = ("_connection_string", "_password", "_schema_name", "_username")

    _connection_string: str
    _password: str
    _schema_name: str
    _username: str

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("No constructor defined for TenantCredentials")

    @classmethod
    def _issue(
        cls, *, username: str, password: str, schema_name: str, connection_string: str
    ) -> TenantCredentials:
        credentials = object.__new__(cls)
        credentials._username = username
        credentials._password = password
        credentials._schema_name = schema_name
        credentials._connection_string = connection_string
        return credentials

    @property
    def username(self) -> str:
        """The login role (lower-cased, as PostgreSQL names it)."""
        return self._username

    @property
    def password(self) -> str:
        """The role's password (the given one, or the generated one)."""
        return self._password

    @property
    def schema_name(self) -> str:
        """The tenant's schema (lower-cased, as PostgreSQL names it)."""
        return self._schema_name

    @property
    def connection_string(self) -> str:
        """A URL for the admin URL's host, port and database, as this tenant."""
        return self._connection_string

    def __repr__(self) -> str:
        return (
            f"TenantCredentials(username='{self._username}', "
            f"schema_name='{self._schema_name}', password='***', "
            "connection_string='***')"
        )


def _fail(template: str, reason: str, cause: BaseException | None = None) -> NoReturn:
    raise DatabaseRuntimeError(template.format(reason=reason)) from cause


class DatabaseAdmin:
    """PostgreSQL tenant administration (API.md 3.16). Does not connect yet.

    Args:
        database_url: ``postgres[ql]://user:password@host:port/database``; the
            administrator needs ``CREATEROLE`` and ``CREATE`` on the database.

    Raises:
        TypeError: ``database_url`` is not a str.
        RuntimeError: A non-PostgreSQL URL, an unparsable URL, or no database
            name in its path (as ``cloaca.DatabaseError``).
    """

    __slots__ = ("_target",)

    def __init__(self, database_url: str) -> None:
        url = _require_str(database_url, "database_url")
        if not url.startswith(("postgres://", "postgresql://")):
            raise DatabaseRuntimeError(texts.ADMIN_REQUIRES_POSTGRES)
        from cloaca.storage.pg_url import parse_postgres_url
        from cloaca.storage.urls import InvalidDatabaseUrl

        try:
            target = parse_postgres_url(url)
        except InvalidDatabaseUrl as exc:
            _fail(texts.ADMIN_INVALID_URL, str(exc), exc)
        if target.database is None:
            raise DatabaseRuntimeError(texts.ADMIN_DATABASE_NAME_REQUIRED)
        self._target: PostgresTarget = target

    def __repr__(self) -> str:
        return "DatabaseAdmin()"

    def create_tenant(self, config: TenantConfig) -> TenantCredentials:
        """Provision a tenant: schema, login role, grants and tables, atomically.

        Args:
            config: The tenant to create.

        Returns:
            The tenant's credentials, with a connection string for the admin
            URL's host, port and database.

        Raises:
            TypeError: ``config`` is not a ``TenantConfig``.
            RuntimeError: ``Failed to create tenant: <reason>`` (as
                ``cloaca.DatabaseError``): an empty or invalid name, an existing
                role, an unreachable server, a refused statement. Nothing was
                created.
        """
        if not isinstance(config, TenantConfig):
            raise TypeError(
                f"config must be a TenantConfig, not {type(config).__name__}"
            )
        schema, role = self._validated(
            config.schema_name, config.username, texts.CREATE_TENANT_FAILED
        )
        password = config.password or _generate_password()
        from cloaca.storage import pg_tenants
        from cloaca.storage.errors import StorageError

        try:
            _run(
                lambda: pg_tenants.create_tenant(
                    self._target, schema=schema, role=role, password=password
                )
            )
        except StorageError as exc:
            _fail(texts.CREATE_TENANT_FAILED, str(exc), exc)
        return TenantCredentials._issue(
            username=role,
            password=password,
            schema_name=schema,
            connection_string=self._target.with_credentials(role, password),
        )

    def remove_tenant(self, schema_name: str, username: str) -> None:
        """Drop a tenant's schema (with everything in it) and its login role.

        Args:
            schema_name: The tenant's schema.
            username: The tenant's login role.

        Raises:
            TypeError: A name is not a str.
            RuntimeError: ``Failed to remove tenant: <reason>`` (as
                ``cloaca.DatabaseError``): an empty or invalid name, a superuser
                role, an unreachable server, a refused statement.
        """
        schema, role = self._validated(
            _require_str(schema_name, "schema_name"),
            _require_str(username, "username"),
            texts.REMOVE_TENANT_FAILED,
        )
        from cloaca.storage import pg_tenants
        from cloaca.storage.errors import StorageError

        try:
            _run(
                lambda: pg_tenants.remove_tenant(self._target, schema=schema, role=role)
            )
        except StorageError as exc:
            _fail(texts.REMOVE_TENANT_FAILED, str(exc), exc)

    @staticmethod
    def _validated(schema_name: str, username: str, template: str) -> tuple[str, str]:
        """Both names checked and folded before any SQL, or the failure raised."""
        from cloaca.storage import identifiers

        if not schema_name:
            _fail(template, texts.TENANT_SCHEMA_EMPTY)
        if not username:
            _fail(template, texts.TENANT_USERNAME_EMPTY)
        try:
            return identifiers.schema_name(schema_name), identifiers.role_name(username)
        except identifiers.InvalidIdentifier as exc:
            _fail(template, f"Invalid configuration: {exc}", exc)
