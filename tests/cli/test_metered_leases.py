"""``cloaca run`` wraps its store for metrics; leases must survive the wrapping."""

from __future__ import annotations

import pytest

from cloaca.health import MeteredStore, Metrics
from cloaca.storage import open_store
from cloaca.storage.leases import lease_store_for


@pytest.mark.postgres
def test_a_metered_postgres_store_keeps_its_leases() -> None:
    store = open_store("postgresql://postgres@127.0.0.1:5432/test", schema="t_metered")
    metered = MeteredStore(store, Metrics())
    leases = lease_store_for(metered)
    assert leases is not None
    assert hasattr(leases, "apply_leased")


def test_a_metered_sqlite_store_has_no_leases(tmp_path: object) -> None:
    store = open_store("sqlite:///:memory:")
    assert lease_store_for(MeteredStore(store, Metrics())) is None
