"""The simulation's store: the real SQLite store, inline, with a kill switch and faults.

`SimStore` wraps an `InlineSqliteStore` (real store code, real SQLite file, calls run
on the loop's thread). It adds what a simulated process needs:

* ``kill()``: the process is dead; every later call raises ``StorageUnavailable``
  (nothing it had not committed reaches the file). ``close`` still closes the file.
* seeded commit latency on the simulation clock, so group commit batches vary;
* seeded commit failures, before the batch reaches the file or after it committed
  (the answer lost with the connection), within a budget;
* a record of completion writes: TEMP triggers on the store's own connection (the
  file's schema is untouched) keep the values of every write that marks a task
  ``Completed`` and of every write of its output metadata, so a completion recorded
  twice is seen even where the upsert would hide it. A batch written again after its
  answer was lost writes the same values (an idempotent replay, not a second
  completion); a second completion writes other ones.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from actors import ManualClock
from cloaca.storage.errors import StorageUnavailable
from cloaca.storage.journal import JournalEvent
from cloaca.storage.protocol import ExecutionRow
from cloaca.storage.sqlite_inline import InlineSqliteStore

_TRIGGERS = (
    "CREATE TEMP TABLE IF NOT EXISTS sim_writes (kind TEXT, task_id BLOB, value TEXT)",
    "CREATE TEMP TRIGGER IF NOT EXISTS sim_completed AFTER UPDATE OF status"
    " ON main.task_executions WHEN NEW.status = 'Completed'"
    " BEGIN INSERT INTO sim_writes VALUES ('completed', NEW.id, NEW.completed_at);"
    " END",
    "CREATE TEMP TRIGGER IF NOT EXISTS sim_meta_insert AFTER INSERT"
    " ON main.task_execution_metadata BEGIN INSERT INTO sim_writes VALUES"
    " ('metadata', NEW.task_execution_id,"
    " coalesce(hex(NEW.context_id), '') || NEW.updated_at); END",
    "CREATE TEMP TRIGGER IF NOT EXISTS sim_meta_update AFTER UPDATE"
    " ON main.task_execution_metadata BEGIN INSERT INTO sim_writes VALUES"
    " ('metadata', NEW.task_execution_id,"
    " coalesce(hex(NEW.context_id), '') || NEW.updated_at); END",
)


class SimStore:
    """See the module. ``writes`` accumulates across the stores of one simulation.

    Args:
        url: The SQLite file's URL.
        clock: The simulation clock (commit latency).
        rng: Seeded source of latency and failures.
        writes: Distinct completion writes per (kind, task row id), for every epoch.
        max_latency: Longest commit latency, in simulated seconds.
        failure_probability: Chance that a commit fails (half before, half after).
        failure_budget: How many commit failures may be injected in this store.
    """

    def __init__(
        self,
        url: str,
        clock: ManualClock,
        rng: random.Random,
        writes: defaultdict[tuple[str, uuid.UUID], set[str]],
        *,
        max_latency: float = 0.0,
        failure_probability: float = 0.0,
        failure_budget: int = 0,
    ) -> None:
        self.inner = InlineSqliteStore(url)
        self.clock = clock
        self.rng = rng
        self.writes = writes
        self.max_latency = max_latency
        self.failure_probability = failure_probability
        self.failure_budget = failure_budget
        self.failures = 0
        self.dead = False

    def __getattr__(self, name: str) -> object:
        # The schedule tables and the rest of the Store protocols are the real ones.
        return getattr(self.inner, name)

    @property
    def display_url(self) -> str:
        return self.inner.display_url

    def kill(self) -> None:
        """The process died: refuse every call from now on (close excepted)."""
        self.dead = True

    def _alive(self) -> None:
        if self.dead:
            raise StorageUnavailable("the simulated process is dead")

    async def open(self) -> None:
        self._alive()
        await self.inner.open()
        conn = self.inner._conn
        assert conn is not None
        db = conn._conn
        for statement in _TRIGGERS:
            db.execute(statement)

    async def close(self) -> None:
        conn = self.inner._conn
        if conn is not None and conn._conn is not None:
            rows = conn._conn.execute(
                "SELECT kind, task_id, value FROM sim_writes"
            ).fetchall()
            for kind, task_id, value in rows:
                self.writes[kind, uuid.UUID(bytes=task_id)].add(value)
        await self.inner.close()

    async def apply(self, entries: Sequence[JournalEvent]) -> None:
        self._alive()
        if self.max_latency:
            await self.clock.sleep(self.rng.choice((0.0, self.max_latency)))
            self._alive()
        fail = (
            self.failures < self.failure_budget
            and self.rng.random() < self.failure_probability
        )
        after = fail and self.rng.random() < 0.5
        if fail and not after:
            self.failures += 1
            raise StorageUnavailable("simulated commit failure (before the commit)")
        await self.inner.apply(entries)
        if after:
            self.failures += 1
            raise StorageUnavailable("simulated commit failure (after the commit)")

    async def load_unfinished(self) -> list[ExecutionRow]:
        self._alive()
        return await self.inner.load_unfinished()

    async def get_execution(self, execution_id: uuid.UUID) -> ExecutionRow | None:
        self._alive()
        return await self.inner.get_execution(execution_id)

    async def list_executions(self, **kwargs: Any) -> list[ExecutionRow]:
        self._alive()
        return await self.inner.list_executions(**kwargs)
