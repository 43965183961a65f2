"""Pure restart planning: which children stop and start when one has to restart.

`should_restart` applies the restart types (permanent always, transient only after a
crash, temporary never). `plan_restart` applies the strategy: the returned plan lists
the siblings to stop (reverse start order), the temporary ones among them that are
dropped rather than restarted, and the children to start again (start order).
`plan_shutdown` is the reverse start order. No event loop, so the rules are tested
exhaustively.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from .exit import Crashed, ExitReason
from .spec import Restart, Strategy

__all__ = ("RestartPlan", "plan_restart", "plan_shutdown", "should_restart")


class RestartPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The children a restart touches.

    Attributes:
        stop: Running siblings to stop first, in reverse start order.
        drop: Members of ``stop`` that are temporary: removed, not restarted.
        start: Children to start again, in start order (the failed one included).
    """

    stop: tuple[str, ...]
    drop: tuple[str, ...]
    start: tuple[str, ...]


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """Return whether a ``restart``-kind child that exited with ``reason`` restarts."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return type(reason) is Crashed
    return False


def plan_restart(
    strategy: Strategy,
    children: Sequence[tuple[str, Restart]],
    failed_id: str,
) -> RestartPlan:
    """Plan the restart of ``failed_id`` among ``children`` (in start order).

    Args:
        strategy: The supervisor's strategy.
        children: ``(id, restart type)`` of every current child, in start order.
        failed_id: The child that exited and is to be restarted.

    Returns:
        The plan.

    Raises:
        KeyError: If ``failed_id`` is not among ``children``.
    """
    ids = [child_id for child_id, _ in children]
    try:
        index = ids.index(failed_id)
    except ValueError:
        raise KeyError(failed_id) from None
    if strategy is Strategy.ONE_FOR_ONE:
        return RestartPlan(stop=(), drop=(), start=(failed_id,))
    affected = children if strategy is Strategy.ONE_FOR_ALL else children[index:]
    siblings = [(cid, kind) for cid, kind in affected if cid != failed_id]
    return RestartPlan(
        stop=tuple(cid for cid, _ in reversed(siblings)),
        drop=tuple(
            cid for cid, kind in reversed(siblings) if kind is Restart.TEMPORARY
        ),
        start=tuple(
            cid
            for cid, kind in affected
            if cid == failed_id or kind is not Restart.TEMPORARY
        ),
    )


def plan_shutdown(children: Sequence[str]) -> tuple[str, ...]:
    """Return the stop order for ``children`` given in start order: the reverse."""
    return tuple(reversed(children))
