"""The account operations over HTTP (a Starlette sub-app): see :mod:`geogate.accounts_api.app`."""

from __future__ import annotations

from geogate.accounts_api.app import ApiToken, Role, create_accounts_app

__all__ = ["ApiToken", "Role", "create_accounts_app"]
