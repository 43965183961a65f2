"""DatabaseAdmin, TenantConfig, TenantCredentials (API.md 3.16) on the local server."""

from __future__ import annotations

import asyncio
import string
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import pytest

from cloaca.admin import DatabaseAdmin, TenantConfig, TenantCredentials
from cloaca.errors import CloacaError, DatabaseError
from cloaca.storage import journal as j
from cloaca.storage.postgres import PostgresStore

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
UNREACHABLE = "postgresql://postgres:sekrit@127.0.0.1:1/test"
T = TypeVar("T")


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


async def admin_conn() -> asyncpg.Connection:
    return await asyncpg.connect(ADMIN_URL)


@pytest.fixture
def tenants() -> Iterator[list[tuple[str, str]]]:
    """(schema, role) pairs a test provisions; removed afterwards whatever happened."""
    made: list[tuple[str, str]] = []
    yield made

    async def cleanup() -> None:
        conn = await admin_conn()
        try:
            for schema, role in made:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await conn.close()

    run(cleanup)


def names(tenants: list[tuple[str, str]]) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:12]
    pair = (f"tenant_{suffix}", f"role_{suffix}")
    tenants.append(pair)
    return pair


# --- construction (no connection) ------------------------------------------------


def test_sqlite_url_is_refused_with_the_reference_text() -> None:
    with pytest.raises(RuntimeError) as caught:
        DatabaseAdmin("sqlite:///tmp/x.db")
    assert str(caught.value) == (
        "DatabaseAdmin requires a PostgreSQL connection. SQLite does not support "
        "database schemas or user management. Use a PostgreSQL URL like "
        "'postgres://user:pass@host/db'"
    )
    assert isinstance(caught.value, DatabaseError)
    assert isinstance(caught.value, CloacaError)


@pytest.mark.parametrize("url", ["postgres://[bad", "postgresql://u@h:99999999/db"])
def test_unparsable_url_is_invalid(url: str) -> None:
    with pytest.raises(RuntimeError, match=r"^Invalid database URL:"):
        DatabaseAdmin(url)


@pytest.mark.parametrize("url", ["postgresql://u@h:5432", "postgres://u:p@h/"])
def test_database_name_is_required(url: str) -> None:
    with pytest.raises(RuntimeError) as caught:
        DatabaseAdmin(url)
    assert str(caught.value) == "Database name is required in URL path"


def test_construction_does_not_connect_and_repr_is_fixed() -> None:
    admin = DatabaseAdmin(UNREACHABLE)
    assert repr(admin) == "DatabaseAdmin()"


def test_database_url_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        DatabaseAdmin(None)  # type: ignore[arg-type]


def test_tenant_config_properties_and_repr() -> None:
    config = TenantConfig("acme", "acme_user", "s3cret")
    assert (config.schema_name, config.username, config.password) == (
        "acme", "acme_user", "s3cret",
    )  # fmt: skip
    assert repr(config) == (
        "TenantConfig(schema_name='acme', username='acme_user', password='***')"
    )
    assert TenantConfig("acme", "u").password == ""
    assert TenantConfig("acme", "u", None).password == ""
    with pytest.raises(TypeError):
        TenantConfig(None, "u")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        config.schema_name = "other"  # type: ignore[misc]


def test_tenant_credentials_are_not_user_constructible() -> None:
    with pytest.raises(TypeError):
        TenantCredentials()
    with pytest.raises(TypeError):
        TenantCredentials("u", "p", "s", "c")


@pytest.mark.parametrize(
    ("schema", "username", "reason"),
    [("", "u", "Invalid configuration: Schema name cannot be empty"),
     ("s", "", "Invalid configuration: Username cannot be empty")],
)  # fmt: skip
def test_empty_names_fail_with_the_reference_text(
    schema: str, username: str, reason: str
) -> None:
    with pytest.raises(RuntimeError) as caught:
        DatabaseAdmin(UNREACHABLE).create_tenant(TenantConfig(schema, username))
    assert str(caught.value) == f"Failed to create tenant: {reason}"


@pytest.mark.parametrize(
    ("schema", "username"),
    [('a"b', "u"), ("s; DROP SCHEMA public CASCADE", "u"), ("public", "u"),
     ("PG_CATALOG", "u"), ("a" * 64, "u"), ("1abc", "u"), ("tënant", "u"),
     ("s", "u'; DROP ROLE postgres; --"), ("s", "public"), ("s", "pg_monitor"),
     ("s", "b" * 64), ("s", "9lives"), ("s", "Ünicode")],
)  # fmt: skip
def test_hostile_names_fail_before_any_sql(schema: str, username: str) -> None:
    # The admin URL is unreachable: reaching the server would fail differently.
    admin = DatabaseAdmin(UNREACHABLE)
    with pytest.raises(RuntimeError) as caught:
        admin.create_tenant(TenantConfig(schema, username))
    assert str(caught.value).startswith(
        "Failed to create tenant: Invalid configuration:"
    )
    with pytest.raises(RuntimeError) as removed:
        admin.remove_tenant(schema, username)
    assert str(removed.value).startswith(
        "Failed to remove tenant: Invalid configuration:"
    )


def test_unreachable_server_fails_with_masked_url() -> None:
    with pytest.raises(RuntimeError) as caught:
        DatabaseAdmin(UNREACHABLE).create_tenant(TenantConfig("s_x", "u_x"))
    message = str(caught.value)
    assert message.startswith("Failed to create tenant: cannot connect")
    assert "127.0.0.1:1" in message
    assert "sekrit" not in message


# --- against the local server ------------------------------------------------------


@pytest.mark.postgres
def test_create_tenant_provisions_schema_role_and_tables(
    tenants: list[tuple[str, str]],
) -> None:
    schema, role = names(tenants)
    credentials = DatabaseAdmin(ADMIN_URL).create_tenant(
        TenantConfig(schema.upper(), role.upper())
    )
    assert (credentials.schema_name, credentials.username) == (schema, role)
    assert len(credentials.password) == 32
    assert set(credentials.password) <= set(string.ascii_letters + string.digits)
    assert credentials.connection_string == (
        f"postgresql://{role}:{credentials.password}@127.0.0.1:5432/test"
    )
    assert repr(credentials) == (
        f"TenantCredentials(username='{role}', schema_name='{schema}', "
        "password='***', connection_string='***')"
    )

    async def check() -> None:
        conn = await asyncpg.connect(credentials.connection_string)
        try:
            await conn.execute(f'SET search_path TO "{schema}"')
            versions = await conn.fetch(
                "SELECT version FROM __diesel_schema_migrations ORDER BY 1"
            )
            assert [v[0] for v in versions] == [
                *(f"{n:03d}" for n in range(10)),
                "cloaca_0001",
                "cloaca_0002",
                "cloaca_0003",
            ]
            assert await conn.fetchval("SELECT count(*) FROM pipeline_executions") == 0
            await conn.execute("CREATE TABLE cloaca_own_table (id int)")
        finally:
            await conn.close()

    run(check)


@pytest.mark.postgres
def test_given_password_is_used_and_store_opens_with_tenant_credentials(
    tenants: list[tuple[str, str]],
) -> None:
    schema, role = names(tenants)
    credentials = DatabaseAdmin(ADMIN_URL).create_tenant(
        TenantConfig(schema, role, "pa'ss\\wörd $1")
    )
    assert credentials.password == "pa'ss\\wörd $1"

    async def use() -> None:
        # The tenant's own role has no CREATE on the database; opening still works
        # because the schema exists (the reference fails here, API.md 4.16).
        store = PostgresStore(credentials.connection_string, schema=schema)
        await store.open()
        try:
            execution_id = uuid.uuid4()
            await store.apply([
                j.ExecutionCreated(execution_id=execution_id, pipeline_name="wf",
                                   pipeline_version="fp", context_id=None,
                                   context_json=None, tasks=(),
                                   at=datetime.now(UTC)),
            ])  # fmt: skip
            execution = await store.get_execution(execution_id)
            assert execution is not None
            assert execution.status == "Pending"
        finally:
            await store.close()

    run(use)


@pytest.mark.postgres
def test_tenant_role_cannot_read_another_tenants_tables(
    tenants: list[tuple[str, str]],
) -> None:
    admin = DatabaseAdmin(ADMIN_URL)
    schema_a, role_a = names(tenants)
    schema_b, role_b = names(tenants)
    a = admin.create_tenant(TenantConfig(schema_a, role_a))
    admin.create_tenant(TenantConfig(schema_b, role_b))

    async def probe() -> None:
        conn = await asyncpg.connect(a.connection_string)
        try:
            await conn.fetchval(f'SELECT count(*) FROM "{schema_a}".contexts')
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(f'SELECT count(*) FROM "{schema_b}".contexts')
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f'CREATE TABLE "{schema_b}".intruder (id int)')
        finally:
            await conn.close()

    run(probe)


@pytest.mark.postgres
def test_existing_role_fails_and_creates_nothing(
    tenants: list[tuple[str, str]],
) -> None:
    schema, role = names(tenants)
    other_schema, _ = names(tenants)
    admin = DatabaseAdmin(ADMIN_URL)
    admin.create_tenant(TenantConfig(schema, role))
    with pytest.raises(RuntimeError) as caught:
        admin.create_tenant(TenantConfig(other_schema, role))
    assert str(caught.value).startswith("Failed to create tenant: ")
    assert "already exists" in str(caught.value)

    async def exists() -> bool:
        conn = await admin_conn()
        try:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    other_schema,
                )
            )
        finally:
            await conn.close()

    assert run(exists) is False


@pytest.mark.postgres
def test_remove_tenant_drops_schema_and_role(tenants: list[tuple[str, str]]) -> None:
    schema, role = names(tenants)
    admin = DatabaseAdmin(ADMIN_URL)
    admin.create_tenant(TenantConfig(schema, role))
    assert admin.remove_tenant(schema, role) is None

    async def leftovers() -> tuple[bool, bool]:
        conn = await admin_conn()
        try:
            has_schema = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
            )
            has_role = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role
            )
            return bool(has_schema), bool(has_role)
        finally:
            await conn.close()

    assert run(leftovers) == (False, False)
    admin.remove_tenant(schema, role)  # already gone: nothing to do, no error


@pytest.mark.postgres
def test_remove_tenant_refuses_a_superuser(tenants: list[tuple[str, str]]) -> None:
    schema, _ = names(tenants)
    with pytest.raises(RuntimeError) as caught:
        DatabaseAdmin(ADMIN_URL).remove_tenant(schema, "postgres")
    assert str(caught.value).startswith("Failed to remove tenant: ")
    assert "superuser" in str(caught.value)


@pytest.mark.postgres
def test_admin_works_from_inside_a_running_event_loop(
    tenants: list[tuple[str, str]],
) -> None:
    schema, role = names(tenants)

    async def inside() -> TenantCredentials:
        return DatabaseAdmin(ADMIN_URL).create_tenant(TenantConfig(schema, role))

    credentials = asyncio.run(inside())
    assert credentials.schema_name == schema
