"""The operator console: web pages for trust-and-safety staff, served by ``geogate serve``
under ``/console`` (see :mod:`geogate.console.app` and ``docs/console.md``).

The app module is imported on first use, so that ``python -m geogate.console.passwords``
does not load the web stack (and runs its module once, without runpy's warning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["PREFIX", "create_console_app"]

if TYPE_CHECKING:
    from geogate.console.app import PREFIX, create_console_app
else:

    def __getattr__(name: str) -> Any:
        if name in __all__:
            from geogate.console import app  # noqa: PLC0415

            return getattr(app, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
