"""One runner process of the fault harness: ``python -m tests.faults.runner_proc``.

Arguments: database URL, schema, lease time in seconds. It registers
``fault_chain``, runs a leased ``Runtime`` until SIGTERM (graceful leave) and
prints ``ready <runner id> <pid>`` once it serves. Fault points, each a
probability from the environment drawn from a generator seeded by
``CLOACA_FAULT_SEED``: ``CLOACA_FAULT_KILL_AFTER_CLAIM`` (SIGKILL itself right
after a claim committed, before anything of it started) and
``CLOACA_FAULT_KILL_AROUND_COMMIT`` (SIGKILL itself just before or just after a
journal batch commits, so an acknowledged or unacknowledged batch is cut off);
``CLOACA_FAULT_KILL_AFTER_BODY`` lives in ``flows``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from typing import Any

import anyio

import cloaca
from cloaca.config import settings_of
from cloaca.runtime.engine import Runtime
from cloaca.storage.pg_leases import PgLeaseStore
from tests.faults import flows

_rng = random.Random(f"{os.environ.get('CLOACA_FAULT_SEED', '0')}-proc")


def _chance(name: str) -> float:
    return float(os.environ.get(name, "0") or 0)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_fault_points() -> None:
    """Wrap the lease store so this process can kill itself at chosen points."""
    after_claim = _chance("CLOACA_FAULT_KILL_AFTER_CLAIM")
    around_commit = _chance("CLOACA_FAULT_KILL_AROUND_COMMIT")
    claim = PgLeaseStore.claim
    apply_leased = PgLeaseStore.apply_leased

    async def claim_then_maybe_die(self: PgLeaseStore, **kwargs: Any) -> Any:
        taken = await claim(self, **kwargs)
        if taken and after_claim and _rng.random() < after_claim:
            _die()  # claimed and committed; nothing of it has started
        return taken

    async def apply_and_maybe_die(
        self: PgLeaseStore, *args: Any, **kwargs: Any
    ) -> None:
        if around_commit and _rng.random() < around_commit / 2:
            _die()  # before the commit: the batch is lost, never acknowledged
        await apply_leased(self, *args, **kwargs)
        if around_commit and _rng.random() < around_commit / 2:
            _die()  # committed but not acknowledged to the scheduler

    PgLeaseStore.claim = claim_then_maybe_die  # type: ignore[method-assign]
    PgLeaseStore.apply_leased = apply_and_maybe_die  # type: ignore[method-assign]


async def serve(url: str, schema: str, ttl: float) -> None:
    """Run until SIGTERM, then leave gracefully."""
    settings = settings_of(
        cloaca.DefaultRunnerConfig(enable_cron_scheduling=False, max_concurrent_tasks=4)
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        runtime = Runtime(
            url, settings, schema=schema, lease_ttl=ttl, shutdown_timeout=1
        )
        async with runtime:
            print(f"ready {runtime.runner_id} {os.getpid()}", flush=True)
            async for _ in signals:
                break
    exchange = runtime.exchange
    shared = exchange.stats.as_dict() if exchange is not None else {}
    print(f"left {json.dumps(shared)}", flush=True)


def main() -> None:
    """Entry point (see the module docstring)."""
    url, schema, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    flows.define()
    install_fault_points()
    anyio.run(serve, url, schema, ttl)


if __name__ == "__main__":
    main()
