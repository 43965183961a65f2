"""The sub-commands of the ``cloaca`` command (internal: no stability guarantee).

``cloaca.cli`` builds the parser and dispatches; each module here owns one group
of sub-commands (``run``, ``execute``, ``executions``, ``workflows``/``graph``,
``cron``, ``tenant``/``db``/``doctor``) with its ``add_parser`` and handlers, and
``common`` holds what they share: exit codes, the one-line error, database URL
resolution, workflow module loading, logging set-up and output helpers.
"""

from __future__ import annotations

__all__ = ()
