"""Task-level sharing between runners on PostgreSQL (cloaca.runtime.sharing).

Two runtimes share one schema in one process, as two runner processes would
share a database. The owner has one slot; its fan-out's parallel tasks can only
all run if the other runner takes some: the bodies wait for each other, so a
runtime that did not share would hang (and the test fail at its deadline).
Claim expiry is forced with SQL instead of waiting for it; every wait is on an
event or a stored fact.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.lowlevel
import asyncpg
import pytest

import cloaca
from cloaca.config import settings_of
from cloaca.runtime.engine import Runtime
from cloaca.runtime.outcome import ExecutionOutcome
from cloaca.storage.offers import offer_store_for
from cloaca.storage.postgres import PostgresStore
from tests.storage import pg_support

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

URL = pg_support.URL
DEADLINE = 20.0
"""Seconds a test may take before it counts as hung (a sharing failure)."""


def settings(slots: int) -> object:
    return settings_of(
        cloaca.DefaultRunnerConfig(
            enable_cron_scheduling=False, max_concurrent_tasks=slots
        )
    )


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = pg_support.new_schema_name("share")
    try:
        yield name
    finally:
        await pg_support.drop_postgres_schema(name)


async def fetch(schema: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await pg_support.connect()
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def runtime(schema: str, slots: int) -> Runtime:
    # Long leases and claims: nothing expires unless a test expires it.
    return Runtime(URL, settings(slots), schema=schema, lease_ttl=600.0)  # type: ignore[arg-type]


async def started(*runtimes: Runtime) -> None:
    """Wait until every runtime announced itself (and learnt its peers)."""
    for rt in runtimes:
        assert rt.exchange is not None
        with anyio.fail_after(DEADLINE):
            await rt.exchange.announced.wait()


class Meeting:
    """Bodies that wait until ``quorum`` of them run at the same time."""

    def __init__(self, quorum: int) -> None:
        self.quorum = quorum
        self.running = 0
        self.met = anyio.Event()
        self.runs: list[str] = []

    async def attend(self, name: str) -> None:
        self.runs.append(name)
        self.running += 1
        if self.running >= self.quorum:
            self.met.set()
        with anyio.fail_after(DEADLINE):
            await self.met.wait()


def define_fan(name: str, width: int, meeting: Meeting) -> list[str]:
    branches = [f"p{index}" for index in range(width)]
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id="root")
        def root(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("root", True)
            return ctx

        for branch in branches:

            def make(branch: str) -> None:
                @cloaca.task(id=branch, dependencies=["root"])
                async def body(ctx: cloaca.Context) -> cloaca.Context:
                    await meeting.attend(branch)
                    ctx.set(branch, True)
                    return ctx

            make(branch)

        @cloaca.task(id="join", dependencies=branches)
        def join(ctx: cloaca.Context) -> cloaca.Context:
            ctx.set("joined", True)
            return ctx

    return branches


async def completions(schema: str, execution_id: uuid.UUID) -> dict[str, int]:
    rows = await fetch(
        schema,
        "SELECT task_name, count(*) AS n FROM task_execution_metadata"
        " WHERE pipeline_execution_id = $1 GROUP BY task_name",
        execution_id,
    )
    return {r["task_name"].rsplit("::", 1)[-1]: r["n"] for r in rows}


async def test_a_full_runner_leaves_ready_tasks_to_an_idle_one(schema: str) -> None:
    meeting = Meeting(quorum=3)
    branches = define_fan("shared_fan", 3, meeting)
    async with runtime(schema, slots=4) as helper, runtime(schema, slots=1) as owner:
        await started(helper, owner)
        assert owner.exchange is not None
        assert helper.exchange is not None
        with anyio.fail_after(DEADLINE):
            outcome = await owner.execute("shared_fan", "{}")

        assert outcome.status == "Completed"
        context = json.loads(outcome.final_context_json or "{}")
        assert context["joined"] is True
        assert all(context[branch] is True for branch in branches)
        # Every completion recorded once, by the owner, although the helper ran
        # at least two of the three branches (the owner has one slot).
        once = dict.fromkeys(["root", *branches, "join"], 1)
        assert await completions(schema, outcome.execution_id) == once
        assert sorted(meeting.runs) == branches
        assert helper.exchange.stats.claimed >= 2
        assert helper.exchange.stats.posted == helper.exchange.stats.claimed
        assert owner.exchange.stats.remote_results == helper.exchange.stats.posted
        assert owner.exchange.stats.claimed == 0
        assert await fetch(schema, "SELECT * FROM cloaca_task_offers") == []


async def test_a_runner_alone_offers_nothing(schema: str) -> None:
    define_fan("alone_fan", 3, Meeting(quorum=1))
    async with runtime(schema, slots=1) as owner:
        await started(owner)
        assert owner.exchange is not None
        assert owner.exchange.peer_free_slots == 0
        with anyio.fail_after(DEADLINE):
            outcome = await owner.execute("alone_fan", "{}")
        assert outcome.status == "Completed"
        assert owner.exchange.stats.offered == 0


class StuckClaim:
    """root -> (local, remote) -> join, with gates.

    ``local`` holds the owner's only slot until ``local_gate`` is set, so
    ``remote`` is offered; its first run (on the claimer) signals ``first_run``
    and holds until ``hold`` is set.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.runs: list[str] = []
        self.local_gate = anyio.Event()
        self.first_run = anyio.Event()
        self.hold = anyio.Event()
        self.finished = anyio.Event()
        self.outcome: object = None
        with cloaca.WorkflowBuilder(name):
            cloaca.task(id="root")(self._root)
            cloaca.task(id="local", dependencies=["root"])(self._local)
            cloaca.task(id="remote", dependencies=["root"])(self._remote)
            cloaca.task(id="join", dependencies=["local", "remote"])(self._root)

    @staticmethod
    def _root(ctx: cloaca.Context) -> cloaca.Context:
        return ctx

    async def _local(self, ctx: cloaca.Context) -> cloaca.Context:
        self.runs.append("local")
        await self.local_gate.wait()
        return ctx

    async def _remote(self, ctx: cloaca.Context) -> cloaca.Context:
        self.runs.append("remote")
        if self.runs.count("remote") == 1:
            self.first_run.set()
            await self.hold.wait()
        return ctx

    async def run_on(self, owner: Runtime) -> None:
        self.outcome = await owner.execute(self.name, "{}")
        self.finished.set()

    async def completed(self) -> uuid.UUID:
        with anyio.fail_after(DEADLINE):
            await self.finished.wait()
        assert getattr(self.outcome, "status", None) == "Completed"
        execution_id: uuid.UUID = getattr(self.outcome, "execution_id")  # noqa: B009
        return execution_id


ONCE_EACH = {"root": 1, "local": 1, "remote": 1, "join": 1}


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for an in-memory fact (not a duration), with the test deadline."""
    with anyio.fail_after(DEADLINE):
        while not predicate():
            await anyio.lowlevel.checkpoint()


async def test_an_offer_whose_claimer_died_runs_on_its_owner(schema: str) -> None:
    flow = StuckClaim("stuck_claim")
    async with (
        runtime(schema, slots=2) as claimer,
        runtime(schema, slots=1) as owner,
        anyio.create_task_group() as tg,
    ):
        await started(claimer, owner)
        assert owner.exchange is not None
        assert claimer.exchange is not None
        tg.start_soon(flow.run_on, owner)
        with anyio.fail_after(DEADLINE):
            await flow.first_run.wait()
        # The claimer froze inside "remote"; its claim runs out (forced here).
        await fetch(
            schema,
            "UPDATE cloaca_task_offers"
            " SET claim_expires_at = claim_expires_at - interval '1 day'",
        )
        flow.local_gate.set()  # the owner's slot frees: it takes "remote" back
        execution_id = await flow.completed()
        assert flow.runs.count("remote") == 2  # at-least-once: re-run here
        assert owner.exchange.stats.withdrawn == 1
        assert await completions(schema, execution_id) == ONCE_EACH
        # The frozen claimer wakes up: its late result is refused.
        flow.hold.set()
        exchange = claimer.exchange
        await until(lambda: exchange.stats.refused == 1)
        assert exchange.stats.posted == 0
        assert await completions(schema, execution_id) == ONCE_EACH


async def test_a_claimer_leaving_hands_its_claims_back(schema: str) -> None:
    flow = StuckClaim("handed_back")
    async with runtime(schema, slots=1) as owner, anyio.create_task_group() as tg:
        exchange = owner.exchange
        assert exchange is not None
        async with runtime(schema, slots=2) as claimer:
            await started(claimer)
            # The owner learns of its peer at its next announcement.
            await until(lambda: exchange.peer_free_slots > 0)
            tg.start_soon(flow.run_on, owner)
            with anyio.fail_after(DEADLINE):
                await flow.first_run.wait()
            # Leaving here, gracefully, while "remote" runs on the claimer.
        offers = await fetch(
            schema, "SELECT claimed_by, claims FROM cloaca_task_offers"
        )
        assert [(r["claimed_by"], r["claims"]) for r in offers] == [(None, 1)]
        gone = await fetch(
            schema,
            "SELECT * FROM cloaca_runners WHERE runner_id = $1",
            claimer.runner_id,
        )
        assert gone == []
        flow.local_gate.set()
        execution_id = await flow.completed()
        assert flow.runs.count("remote") == 2
        assert await completions(schema, execution_id) == ONCE_EACH


async def test_results_are_accepted_only_from_the_live_claim(schema: str) -> None:
    store = PostgresStore(URL, pool_size=2, schema=schema)
    await store.open()
    try:
        from cloaca.storage.leases import lease_store_for

        leases = lease_store_for(store)
        offers = offer_store_for(leases)
        assert leases is not None
        assert offers is not None
        owner, claimer, stranger = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        execution_id, row_id = uuid.uuid4(), uuid.uuid4()
        await fetch(
            schema,
            "INSERT INTO cloaca_execution_leases VALUES"
            " ($1, $2, now() + interval '1 hour', now(), now())",
            execution_id,
            owner,
        )
        await offers.offer(
            task_execution_id=row_id,
            execution_id=execution_id,
            owner_id=owner,
            task_name="t::p::w::task",
            attempt=1,
            input_json="{}",
        )
        # Unknown task names are not claimed: the claimer could not run them.
        assert (
            await offers.claim(
                runner_id=claimer, task_names=["other"], limit=4, ttl=60, max_claims=2
            )
            == []
        )
        [claimed] = await offers.claim(
            runner_id=claimer,
            task_names=["t::p::w::task"],
            limit=4,
            ttl=60,
            max_claims=2,
        )
        assert (claimed.task_execution_id, claimed.owner_id) == (row_id, owner)
        # Claimed: neither the owner's withdrawal nor another claim gets it.
        assert not await offers.withdraw(row_id, owner)
        assert (
            await offers.claim(
                runner_id=stranger,
                task_names=["t::p::w::task"],
                limit=4,
                ttl=60,
                max_claims=2,
            )
            == []
        )
        # Renewal keeps only the claims an attempt still works on; the others
        # (their actors stopped by a restart) are handed back, not kept forever.
        assert await offers.renew_claims(claimer, 60, [row_id]) == 0
        assert await offers.renew_claims(claimer, 60, []) == 1
        [stale] = await fetch(schema, "SELECT claimed_by FROM cloaca_task_offers")
        assert stale["claimed_by"] is None
        [claimed] = await offers.claim(
            runner_id=claimer,
            task_names=["t::p::w::task"],
            limit=4,
            ttl=60,
            max_claims=2,
        )
        # Two claims so far: a third claimer would be one too many.
        assert await offers.renew_claims(claimer, 60, []) == 1
        assert (
            await offers.claim(
                runner_id=stranger,
                task_names=["t::p::w::task"],
                limit=4,
                ttl=60,
                max_claims=2,
            )
            == []
        )
        [claimed] = await offers.claim(
            runner_id=claimer,
            task_names=["t::p::w::task"],
            limit=4,
            ttl=60,
            max_claims=3,
        )
        post = offers.post_result
        assert not await post(row_id, stranger, attempt=1, output_json="{}", error=None)
        assert not await post(row_id, claimer, attempt=2, output_json="{}", error=None)
        assert await post(row_id, claimer, attempt=1, output_json='{"a":1}', error=None)
        assert not await post(row_id, claimer, attempt=1, output_json="{}", error=None)
        [result] = await offers.take_results(owner)
        assert (result.task_execution_id, result.output_json) == (row_id, '{"a":1}')
        assert await offers.take_results(owner) == []

        # An owner that lost its lease: its offers are no one's to claim.
        await offers.offer(
            task_execution_id=row_id,
            execution_id=execution_id,
            owner_id=owner,
            task_name="t::p::w::task",
            attempt=2,
            input_json="{}",
        )
        await fetch(
            schema, "UPDATE cloaca_execution_leases SET runner_id = $1", stranger
        )
        assert (
            await offers.claim(
                runner_id=claimer,
                task_names=["t::p::w::task"],
                limit=4,
                ttl=60,
                max_claims=2,
            )
            == []
        )
    finally:
        await store.close()


async def test_a_full_runner_offers_nothing_to_runners_that_are_full_too(
    schema: str,
) -> None:
    gate, busy = anyio.Event(), anyio.Event()
    with cloaca.WorkflowBuilder("occupy"):

        @cloaca.task(id="hold")
        async def hold(ctx: cloaca.Context) -> cloaca.Context:
            busy.set()
            await gate.wait()
            return ctx

    define_fan("full_fan", 2, Meeting(quorum=1))
    async with runtime(schema, slots=1) as other, anyio.create_task_group() as tg:
        tg.start_soon(other.execute, "occupy", "{}")
        with anyio.fail_after(DEADLINE):
            await busy.wait()

        async def other_announced_full() -> bool:
            rows = await fetch(
                schema,
                "SELECT free_slots FROM cloaca_runners WHERE runner_id = $1",
                other.runner_id,
            )
            return [r["free_slots"] for r in rows] == [0]

        with anyio.fail_after(DEADLINE):
            while not await other_announced_full():
                await anyio.lowlevel.checkpoint()
        async with runtime(schema, slots=1) as owner:
            await started(owner)
            assert owner.exchange is not None
            assert owner.exchange.peer_free_slots == 0
            with anyio.fail_after(DEADLINE):
                outcome = await owner.execute("full_fan", "{}")
            assert outcome.status == "Completed"
            assert owner.exchange.stats.offered == 0
        gate.set()


async def test_attempts_queued_before_a_peer_appeared_are_offered_to_it(
    schema: str,
) -> None:
    # Alone with one slot, the owner queues two of the three branches locally
    # (nobody to offer them to). The bodies wait for each other, so the run
    # completes only if a runner that joins later takes the queued two.
    meeting = Meeting(quorum=3)
    branches = define_fan("late_peer_fan", 3, meeting)
    async with runtime(schema, slots=1) as owner, anyio.create_task_group() as tg:
        await started(owner)
        exchange = owner.exchange
        assert exchange is not None
        limiter = exchange.limiter
        assert limiter is not None
        outcomes: list[ExecutionOutcome] = []
        finished = anyio.Event()

        async def run() -> None:
            outcomes.append(await owner.execute("late_peer_fan", "{}"))
            finished.set()

        tg.start_soon(run)
        with anyio.fail_after(DEADLINE):
            while limiter.statistics().tasks_waiting < 2:
                await anyio.lowlevel.checkpoint()
        assert exchange.stats.offered == 0
        async with runtime(schema, slots=4) as helper:
            assert helper.exchange is not None
            with anyio.fail_after(DEADLINE):
                await finished.wait()
            (outcome,) = outcomes
            assert outcome.status == "Completed"
            assert exchange.stats.offered == 2
            assert helper.exchange.stats.claimed == 2
            assert sorted(meeting.runs) == branches
            once = dict.fromkeys(["root", *branches, "join"], 1)
            assert await completions(schema, outcome.execution_id) == once
        assert await fetch(schema, "SELECT * FROM cloaca_task_offers") == []
