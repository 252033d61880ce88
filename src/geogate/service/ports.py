"""The account seam of the enforcement points: :class:`AccountStatusPort` and an in-memory one.

A request that names an account (``account`` in ``POST /v1/decide``, or the configured account
header at the proxy endpoints and in the middlewares) is denied with reason ``account_blocked``
when the port says the account is blocked, whatever its location.

The port is deliberately one method. The account store (SQLite / PostgreSQL) implements it by
reading the account's current state; it must answer fast (it is on the request path: a cached
read, not a query per request) and signal an outage by raising
:class:`~geogate.errors.StoreUnavailable` (any :class:`~geogate.errors.StoreError`), which the
service turns into its fail mode: ``closed`` refuses the request, ``open`` decides on the
location alone. The service calls it on its event loop (HTTP and gRPC checks alike), but
middlewares in threaded hosts call it from several threads, so implementations must be
thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol, runtime_checkable


@runtime_checkable
class AccountStatusPort(Protocol):
    """Tells whether an account is blocked. Raises ``StoreError`` when it cannot tell."""

    def is_blocked(self, account: str) -> bool:
        """True when ``account`` is blocked (state ``blocked``); False for any other state and
        for accounts the store has never seen."""
        ...


class InMemoryAccountStatus:
    """An :class:`AccountStatusPort` over a set of blocked account ids, for tests, for the
    ``[accounts] blocked`` list of the service configuration, and until a store is wired in.

    Thread-safe; :meth:`block` and :meth:`unblock` take effect for the next request.
    """

    def __init__(self, blocked: Iterable[str] = ()) -> None:
        self._blocked: frozenset[str] = frozenset(blocked)
        self._lock = threading.Lock()

    def is_blocked(self, account: str) -> bool:
        """True when ``account`` is in the blocked set."""
        return account in self._blocked

    def block(self, account: str) -> None:
        """Add ``account`` to the blocked set."""
        with self._lock:
            self._blocked = self._blocked | {account}

    def unblock(self, account: str) -> None:
        """Remove ``account`` from the blocked set (no error when it was not there)."""
        with self._lock:
            self._blocked = self._blocked - {account}

    @property
    def blocked(self) -> frozenset[str]:
        """The blocked account ids right now."""
        return self._blocked
