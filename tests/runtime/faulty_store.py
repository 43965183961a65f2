"""A fault-injecting wrapper around a real store (CONVENTIONS.md 7, item 4).

The database stays real; only chosen ``apply`` calls fail, either before the
batch reaches the database or after it committed (a connection cut off while the
commit's answer was on its way).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cloaca.storage.errors import StorageUnavailable
from cloaca.storage.journal import JournalEvent
from cloaca.storage.protocol import ExecutionRow, Store


class FaultyStore:
    """Delegates to ``inner``; fails the ``apply`` calls whose numbers are listed."""

    def __init__(
        self,
        inner: Store,
        *,
        fail_before: Sequence[int] = (),
        fail_after_commit: Sequence[int] = (),
    ) -> None:
        self.inner = inner
        self.fail_before = set(fail_before)
        self.fail_after_commit = set(fail_after_commit)
        self.apply_calls = 0
        self.injected = 0

    def __getattr__(self, name: str) -> object:
        # Everything not faulted here (schedule and lease tables, ...) is the real
        # store's, so the wrapper keeps up as the Store protocols grow.
        return getattr(self.inner, name)

    @property
    def display_url(self) -> str:
        return self.inner.display_url

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def apply(self, entries: Sequence[JournalEvent]) -> None:
        self.apply_calls += 1
        call = self.apply_calls
        if call in self.fail_before:
            self.injected += 1
            raise StorageUnavailable(f"injected failure before apply call {call}")
        await self.inner.apply(entries)
        if call in self.fail_after_commit:
            self.injected += 1
            raise StorageUnavailable(
                f"injected failure after apply call {call} committed"
            )

    async def load_unfinished(self) -> list[ExecutionRow]:
        return await self.inner.load_unfinished()

    async def get_execution(self, execution_id: uuid.UUID) -> ExecutionRow | None:
        return await self.inner.get_execution(execution_id)

    async def list_executions(
        self,
        *,
        pipeline_name: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ExecutionRow]:
        return await self.inner.list_executions(
            pipeline_name=pipeline_name, status=status, limit=limit, offset=offset
        )
