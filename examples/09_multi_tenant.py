"""Multi-tenancy on PostgreSQL: one schema (and login role) per tenant.

    python examples/09_multi_tenant.py [POSTGRES_URL]

Creates two tenants with DatabaseAdmin, runs the same workflow for each through a
runner on its own schema, shows that each tenant sees only its own executions, and
removes the tenants again. Needs a PostgreSQL server (default:
postgresql://postgres@127.0.0.1:5432/test). Given a SQLite URL (as the example
runner of the tests does for every example) it uses the default server instead.
"""

from __future__ import annotations

import sys
import uuid

import cloaca

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"

with cloaca.WorkflowBuilder("monthly_invoice"):

    @cloaca.task(id="bill")
    def bill(ctx):
        ctx.set("invoice", f"{ctx.get('customer')}: {ctx.get('amount')} EUR")
        return ctx


def admin_url() -> str:
    if len(sys.argv) > 1 and sys.argv[1].startswith(("postgres://", "postgresql://")):
        return sys.argv[1]
    return DEFAULT_URL


if __name__ == "__main__":
    url = admin_url()
    admin = cloaca.DatabaseAdmin(url)
    suffix = uuid.uuid4().hex[:8]
    tenants = {}
    for name in ("acme", "globex"):
        config = cloaca.TenantConfig(f"{name}_{suffix}", f"{name}_{suffix}_app")
        tenants[name] = admin.create_tenant(config)
        print("created", tenants[name])
    try:
        seen = {}
        for name, credentials in tenants.items():
            # The tenant's own credentials: this role reaches only its schema.
            with cloaca.DefaultRunner.with_schema(
                credentials.connection_string, credentials.schema_name
            ) as runner:
                result = runner.execute(
                    "monthly_invoice", cloaca.Context({"customer": name, "amount": 42})
                )
                print(name, result.status, result.final_context.get("invoice"))
                seen[name] = result.execution_id
        assert len(set(seen.values())) == 2
    finally:
        for credentials in tenants.values():
            admin.remove_tenant(credentials.schema_name, credentials.username)
            print("removed", credentials.schema_name)
