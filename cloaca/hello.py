"""Smoke-test helpers: ``hello_world`` and ``HelloClass`` (API.md 3.1-3.2)."""

from __future__ import annotations

from cloaca import texts

__all__ = ["HelloClass", "hello_world"]


def hello_world() -> str:
    """Return exactly ``"Hello from Cloaca backend!"``."""
    return texts.HELLO_WORLD


class HelloClass:
    """Smoke-test class; takes no arguments."""

    __slots__ = ()

    def get_message(self) -> str:
        """Return exactly ``"Hello from HelloClass!"``."""
        return texts.HELLO_CLASS_MESSAGE

    def __repr__(self) -> str:
        return f"HelloClass(message='{texts.HELLO_CLASS_MESSAGE}')"
