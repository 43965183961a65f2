"""Every asyncpg error a store can meet is translated, including a connection left
mid-operation by a killed backend (asyncpg's InternalClientError)."""

from __future__ import annotations

import asyncpg

from cloaca.storage.errors import StorageUnavailable
from cloaca.storage.pg_errors import DRIVER_ERRORS, is_connection_lost, translate_error
from cloaca.storage.pg_url import parse_postgres_url


def test_internal_client_error_counts_as_a_lost_connection() -> None:
    exc = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    assert isinstance(exc, DRIVER_ERRORS)
    assert is_connection_lost(exc)
    target = parse_postgres_url("postgresql://app:secret@127.0.0.1:5432/orders")
    error = translate_error(exc, target, action="release leases")
    assert isinstance(error, StorageUnavailable)
    assert "orders" in str(error)
    assert "secret" not in str(error)
