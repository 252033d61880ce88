"""An in-memory index of the stored events by organisation and client address.

Organisation ids and addresses live only in the events' records (the account rows hold
aggregated evidence), and the event table has no index on them. The console reads the events
once, in insertion order (in the background, from the first console request), and then only
those added since (``seq`` is the table's primary
key, so a catch-up is one range query); it is a cache derived from the store, never written
back. Until the first pass is done, searches by organisation or address say so.

Memory: one entry per distinct (organisation, account) and (address, account) pair, plus the
event sequence numbers per account (8 bytes each) for the account timeline.
"""

from __future__ import annotations

import logging
import threading
from array import array
from collections.abc import Iterator
from typing import Final

import orjson
from sqlalchemy import select

from geogate.store.schema import events
from geogate.store.sql import SqlStore

log = logging.getLogger("geogate.console")

BATCH: Final = 20_000
MAX_ACCOUNTS_PER_KEY: Final = 1_000  # an address shared by more accounts lists the first ones


class EventIndex:
    """Organisation -> accounts, address -> accounts, account -> organisation, account ->
    event sequence numbers. Thread-safe; :meth:`catch_up` reads new events."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._catching = threading.Lock()
        self.last_seq = 0
        self.events = 0
        self.ready = False
        self.orgs: dict[str, set[str]] = {}
        self.ips: dict[str, set[str]] = {}
        self.org_of: dict[str, str] = {}
        self.seqs: dict[str, array[int]] = {}
        self.problem: str | None = None
        self._started = False

    def _rows(self, after: int) -> Iterator[list[tuple[int, str, str]]]:
        last = after
        while True:
            stmt = (
                select(events.c.seq, events.c.account, events.c.data)
                .where(events.c.seq > last)
                .order_by(events.c.seq)
                .limit(BATCH)
            )
            with self._store.engine.connect() as conn:
                rows = [(int(s), str(a), str(d)) for s, a, d in conn.execute(stmt)]
            if rows:
                yield rows
            if len(rows) < BATCH:
                return
            last = rows[-1][0]

    def catch_up(self) -> None:
        """Read the events stored since the last call (one caller at a time; others return)."""
        if not self._catching.acquire(blocking=False):
            return
        try:
            for rows in self._rows(self.last_seq):
                with self._lock:
                    for seq, account, data in rows:
                        self._add(seq, account, data)
                    self.last_seq = rows[-1][0]
            self.ready = True
            self.problem = None
        except Exception as exc:  # a cache: report the problem, keep what was read
            self.problem = f"{type(exc).__name__}: {exc}"
            log.warning("console event index: %s", self.problem)
        finally:
            self._catching.release()

    def start(self) -> None:
        """Run the first pass in a background thread (once; later calls do nothing).

        Called on the first console request, not when the app is made: a supervisor process
        makes an app only to check the configuration before forking its workers, and a
        SQLite connection in use across ``fork()`` breaks the database for the children.
        """
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self.catch_up, name="console-index", daemon=True).start()

    def _add(self, seq: int, account: str, data: str) -> None:
        self.events += 1
        seqs = self.seqs.get(account)
        if seqs is None:
            seqs = self.seqs[account] = array("q")
        seqs.append(seq)
        try:
            rec = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(rec, dict):
            return
        org = rec.get("org")
        if isinstance(org, str) and org:
            members = self.orgs.setdefault(org, set())
            if len(members) < MAX_ACCOUNTS_PER_KEY:
                members.add(account)
            self.org_of[account] = org
        ip = rec.get("ip")
        if isinstance(ip, str) and ip:
            users = self.ips.setdefault(ip, set())
            if len(users) < MAX_ACCOUNTS_PER_KEY:
                users.add(account)

    def accounts_of_org(self, org: str) -> list[str]:
        """The accounts whose events named organisation ``org``, sorted."""
        with self._lock:
            return sorted(self.orgs.get(org, ()))

    def accounts_at(self, ip: str) -> list[str]:
        """The accounts whose events came from address ``ip``, sorted."""
        with self._lock:
            return sorted(self.ips.get(ip, ()))

    def orgs_like(self, text: str, limit: int = 20) -> list[str]:
        """Organisation ids starting with ``text`` (case-sensitive), sorted."""
        with self._lock:
            return sorted(o for o in self.orgs if o.startswith(text))[:limit]

    def org(self, account: str) -> str | None:
        """The last organisation named by the account's events."""
        with self._lock:
            return self.org_of.get(account)

    def recent_seqs(self, account: str, limit: int) -> list[int]:
        """Sequence numbers of the account's last ``limit`` events."""
        with self._lock:
            seqs = self.seqs.get(account)
            return list(seqs[-limit:]) if seqs is not None else []
