"""geogate: geographic access enforcement for API platforms."""

from __future__ import annotations

__version__ = "0.1.0"
