"""Multi-tenant administration (being written; see the PostgreSQL issue)."""

from __future__ import annotations


class DatabaseAdmin:
    """PostgreSQL tenant administration (API.md 3.16)."""


class TenantConfig:
    """Configuration of one tenant (API.md 3.16)."""


class TenantCredentials:
    """Credentials returned by ``DatabaseAdmin.create_tenant`` (API.md 3.16)."""
