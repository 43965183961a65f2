"""Execution leases, backend-neutral: the ``LeaseLost`` error and the store lookup.

Leases let several runner processes share one database (DESIGN.md, Scale-out).
Only PostgreSQL coordinates them (``pg_leases.PgLeaseStore``): SQLite is one
machine's file, and its runners keep the conditional starts of the plain store.
``lease_store_for`` therefore answers ``None`` for anything but a
``PostgresStore``, and the runtime then runs without leases, as before.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from cloaca.storage import journal as j
from cloaca.storage.errors import StorageError

if TYPE_CHECKING:
    from cloaca.storage.protocol import LeaseStore

__all__ = ("LeaseLost", "execution_ids_of", "lease_store_for")


class LeaseLost(StorageError):
    """A batch touched executions whose lease this runner no longer holds.

    Attributes:
        execution_ids: The executions taken over by another runner (or whose
            lease is gone); nothing of the batch was written.
    """

    def __init__(self, execution_ids: frozenset[uuid.UUID]) -> None:
        listing = ", ".join(sorted(str(i) for i in execution_ids))
        super().__init__(
            f"this runner no longer holds the lease of execution(s) {listing}; "
            "another runner took them over, so the batch was not written"
        )
        self.execution_ids = execution_ids


def execution_ids_of(
    entries: Iterable[j.JournalEvent],
) -> tuple[set[uuid.UUID], set[uuid.UUID], set[uuid.UUID]]:
    """The executions a batch creates, names, and finishes.

    Task entries that carry only a task id name no execution here; the caller
    passes those executions explicitly.
    """
    created: set[uuid.UUID] = set()
    named: set[uuid.UUID] = set()
    finished: set[uuid.UUID] = set()
    for entry in entries:
        match entry:
            case j.ExecutionCreated():
                created.add(entry.execution_id)
            case j.ExecutionFinished():
                finished.add(entry.execution_id)
                named.add(entry.execution_id)
            case (
                j.ExecutionRunning()
                | j.TaskCompleted()
                | j.TaskReset()
                | j.TaskAbandoned()
            ):
                named.add(entry.execution_id)
            case _:
                pass
    return created, named, finished


def lease_store_for(store: object) -> LeaseStore | None:
    """The lease store beside ``store``, or None where leases do not apply.

    A wrapping store (the metrics of ``cloaca run``) answers through its own
    ``lease_store()`` method, so wrapping never switches leases off.
    """
    own = type(store).__dict__.get("lease_store")
    if callable(own):
        return cast("LeaseStore | None", own(store))
    # A PostgresStore exists only once its module (and asyncpg) was imported, so
    # looking there keeps this check free of driver imports.
    module = sys.modules.get("cloaca.storage.postgres")
    if module is None or not isinstance(store, module.PostgresStore):
        return None
    from cloaca.storage.pg_leases import PgLeaseStore

    return PgLeaseStore(store)
