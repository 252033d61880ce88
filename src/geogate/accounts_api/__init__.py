"""The account operations over HTTP (a Starlette sub-app): see :mod:`geogate.accounts_api.app`."""

from __future__ import annotations

from geogate.accounts_api.app import StateChange, create_accounts_app
from geogate.accounts_api.tokens import ApiToken, Role

__all__ = ["ApiToken", "Role", "StateChange", "create_accounts_app"]
