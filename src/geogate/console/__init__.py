"""The operator console: web pages for trust-and-safety staff, served by ``geogate serve``
under ``/console`` (see :mod:`geogate.console.app` and ``docs/console.md``)."""

from __future__ import annotations

from geogate.console.app import PREFIX, create_console_app

__all__ = ["PREFIX", "create_console_app"]
