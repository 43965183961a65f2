"""cloaca: durable workflow orchestration on an asyncio actor runtime.

The public API is that of Cloacina's ``cloaca`` Python bindings (v0.3.1): tasks are
decorated with :func:`task`, assembled into workflows with :class:`WorkflowBuilder`
and executed durably by :class:`DefaultRunner` (or :class:`AsyncRunner` on the
caller's own event loop).
"""

from __future__ import annotations

__version__ = "0.3.1"
