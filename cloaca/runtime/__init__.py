"""The workflow runtime built from actors (internal: no stability guarantee).

Persistence, Scheduler and Executor actors under one ``rest_for_one`` root
supervisor (DESIGN.md, CONVENTIONS.md section 4). The public facades in
``cloaca.runner`` are the only users of this package.
"""

from __future__ import annotations

__all__ = ()
