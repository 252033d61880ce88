"""The store-backed :class:`~geogate.service.ports.AccountStatusPort`: the blocked set in memory.

The decision path must not query the database per request (a decision takes microseconds, a
query a millisecond or more, and a slow database would stall every proxy in front of geogate).
:class:`CachedAccountStatus` keeps the set of blocked account ids in memory and answers
``is_blocked`` with one set lookup; a background thread reloads the whole set every
``refresh_seconds``, and :meth:`CachedAccountStatus.apply` folds in the state changes this
process commits itself (``POST /v1/events``, operator actions), so those count from the next
request on.

Staleness bound: a block (or reinstatement) made elsewhere, by another process or replica or
by ``geogate enforce``, is seen within ``refresh_seconds`` plus the time of one query. When
refreshes fail, the last set keeps being used (one warning per outage, a metric per attempt)
for up to ``max_stale_seconds`` after the last success; after that, and before the first
successful load, ``is_blocked`` raises :class:`~geogate.errors.StoreUnavailable` and the service
applies its fail mode. Accounts of the static ``[accounts] blocked`` list are blocked whatever
the store says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

from geogate.errors import StoreError, StoreUnavailable

log = logging.getLogger("geogate.service")

BLOCKED: Final = "blocked"


class CachedAccountStatus:
    """An :class:`~geogate.service.ports.AccountStatusPort` over a periodically reloaded set.

    ``load`` returns every blocked account id (``SqlStore.blocked_accounts``) and raises
    ``StoreError`` on an outage. ``on_refresh`` is told each refresh's result (``"ok"`` or
    ``"error"``, for a metric). ``monotonic`` is the clock of the staleness bound, in seconds.
    Thread-safe: ``is_blocked`` reads one immutable set; writers hold a lock.
    """

    def __init__(
        self,
        load: Callable[[], frozenset[str]],
        *,
        refresh_seconds: float,
        max_stale_seconds: float,
        static: Iterable[str] = (),
        on_refresh: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.refresh_seconds = refresh_seconds
        self.max_stale_seconds = max_stale_seconds
        self._static = frozenset(static)
        self._on_refresh = on_refresh
        self._monotonic = monotonic
        self._blocked: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._problem: str | None = "the blocked accounts were never loaded"
        self._failing = False  # an outage is being reported (logged once)
        self._expired = False  # the outage outlasted max_stale_seconds (logged once)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- the port ---------------------------------------------------------------------

    def is_blocked(self, account: str) -> bool:
        """True when ``account`` is blocked. Raises StoreUnavailable when the set is older
        than ``max_stale_seconds`` (or was never loaded), unless the account is listed in the
        static configuration."""
        if account in self._static:
            return True
        loaded = self._loaded_at
        if loaded is None or self._monotonic() - loaded > self.max_stale_seconds:
            # The store's own error (hosts, drivers) goes to the log, not to the client.
            raise StoreUnavailable(
                f"account store unavailable: blocked accounts last loaded {self._age_text()}"
            )
        return account in self._blocked

    # ----- keeping the set current ---------------------------------------------------------

    def refresh(self) -> bool:
        """Reload the blocked set from the store; True on success. On failure the previous
        set stays (within the staleness bound), the problem is logged once per outage."""
        with self._lock:
            try:
                blocked = self._load()
            except StoreError as exc:
                self._problem = exc.one_line()
                self._failed()
                return False
            was_failing = self._failing
            self._blocked = blocked
            self._loaded_at = self._monotonic()
            self._problem = None
            self._failing = self._expired = False
        if was_failing:
            log.info("account store refresh recovered: %d blocked accounts", len(blocked))
        self._report("ok")
        return True

    def _failed(self) -> None:
        """Report a failed refresh: a metric each time, a log line per outage and one more
        when the outage outlasts the staleness bound (from then on the fail mode applies)."""
        if not self._failing:
            self._failing = True
            log.warning(
                "account store refresh failed, keeping the blocked set loaded %s: %s",
                self._age_text(),
                self._problem,
            )
        age = self.age_seconds
        if not self._expired and (age is None or age > self.max_stale_seconds):
            self._expired = True
            log.error(
                "blocked accounts older than max_stale_seconds (%g): requests naming an "
                "account are decided by the fail mode until the store answers",
                self.max_stale_seconds,
            )
        self._report("error")

    def apply(self, changes: Iterable[tuple[str, str, str]]) -> None:
        """Fold committed state changes ``(account, from_state, to_state)`` into the set, in
        order, so this process's own blocks count from the next request on."""
        with self._lock:
            blocked = set(self._blocked)
            for account, before, after in changes:
                if after == BLOCKED:
                    blocked.add(account)
                elif before == BLOCKED:
                    blocked.discard(account)
            if blocked != self._blocked:
                self._blocked = frozenset(blocked)

    def start(self) -> None:
        """Start the background refresh thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="geogate-account-refresh", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception as exc:  # keep refreshing whatever one attempt did
                log.exception("account store refresh crashed")
                with self._lock:
                    self._problem = f"{type(exc).__name__}: {exc}"
                    self._failed()

    # ----- introspection ---------------------------------------------------------------

    @property
    def blocked(self) -> frozenset[str]:
        """The blocked account ids in memory (the store's, not the static list)."""
        return self._blocked

    @property
    def age_seconds(self) -> float | None:
        """Seconds since the last successful refresh; None before the first."""
        loaded = self._loaded_at
        return None if loaded is None else self._monotonic() - loaded

    @property
    def problem(self) -> str | None:
        """Why the last refresh failed (one line); None when it succeeded."""
        return self._problem

    def _age_text(self) -> str:
        age = self.age_seconds
        return "never" if age is None else f"{age:.0f} s ago"

    def _report(self, result: str) -> None:
        if self._on_refresh is not None:
            self._on_refresh(result)
