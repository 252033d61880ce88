"""Enforcement points: the decision service (HTTP + Envoy gRPC), its configuration and metrics.

- :func:`geogate.service.app.create_app`: the Starlette app of ``geogate serve``;
- :mod:`geogate.service.engine`: the Engine (policy + snapshot) and :func:`enforce`, shared by
  every enforcement point including :mod:`geogate.asgi` and :mod:`geogate.wsgi`;
- :mod:`geogate.service.responses`: the denial body, statuses and ``x-geogate-*`` headers;
- :mod:`geogate.service.ports`: the account status seam.
"""

from __future__ import annotations
