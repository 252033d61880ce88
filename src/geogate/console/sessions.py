"""Console sessions, CSRF tokens and the sign-in rate limit (all in memory, per process).

A session is a signed value in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over
TLS) naming the operator, their role and the expiry (see :class:`SessionStore`). Every
state-changing form carries the session's CSRF token (an HMAC of the session, so any worker
process can check it) and is refused without it.

Sign-in attempts are limited per client address and per user name: after
:data:`MAX_FAILURES` failures within :data:`WINDOW_SECONDS`, further attempts are refused
(HTTP 429) until the oldest failure leaves the window. The count is kept per worker process:
with N workers an address gets at most N times as many attempts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from geogate.accounts_api.tokens import Role

COOKIE: Final = "geogate_console"
PRE_COOKIE: Final = "geogate_console_pre"  # CSRF token of the sign-in form (before a session)
MAX_FAILURES: Final = 5
WINDOW_SECONDS: Final = 300.0
MAX_SESSIONS: Final = 10_000
"""Most revoked sessions, and most keys of the sign-in limiter, held before pruning."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A signed-in operator: ``name`` is the actor recorded for their actions, ``via`` is
    ``token`` or ``password``; ``expires_at`` in Unix seconds."""

    id: str
    name: str
    role: Role
    csrf: str
    via: str
    expires_at: float

    def csrf_ok(self, presented: str | None) -> bool:
        """True when ``presented`` is this session's CSRF token (constant time)."""
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionStore:
    """Sessions as signed cookies: ``payload.signature``, HMAC-SHA256 over the operator's name,
    role, sign-in method, expiry and a random nonce. Nothing is kept server-side, so every
    worker process of ``geogate serve`` accepts the sessions any of them issued.

    The key is derived from the configured secrets (API tokens, password hashes): changing or
    removing one ends every session. Sign-out removes the cookie from the browser and revokes
    the session in the answering process; a copy of the cookie made before sign-out stays valid
    in other worker processes until it expires, which is why sessions are short.
    """

    def __init__(
        self,
        *,
        key: bytes,
        lifetime_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._lifetime = lifetime_seconds
        self._clock = clock
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def _sign(self, text: str) -> str:
        mac = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def _csrf(self, session_id: str) -> str:
        return self._sign("csrf|" + session_id)

    def create(self, *, name: str, role: Role, via: str) -> Session:
        """A new session for ``name``."""
        expires = self._clock() + self._lifetime
        payload = json.dumps(
            {
                "n": name,
                "r": role.name.lower(),
                "v": via,
                "e": int(expires),
                "s": secrets.token_urlsafe(12),
            },
            separators=(",", ":"),
        )
        body = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
        session_id = f"{body}.{self._sign(body)}"
        return Session(
            id=session_id,
            name=name,
            role=role,
            csrf=self._csrf(session_id),
            via=via,
            expires_at=float(int(expires)),
        )

    def get(self, session_id: str | None) -> Session | None:
        """The session of a cookie value, None when it is forged, expired or revoked."""
        if not session_id or len(session_id) > 1024 or session_id.count(".") != 1:
            return None
        body, signature = session_id.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            name, role, via, expires = data["n"], Role.parse(data["r"]), data["v"], data["e"]
        except (ValueError, KeyError, TypeError):
            return None
        now = self._clock()
        if not isinstance(expires, int) or expires <= now:
            return None
        with self._lock:
            if session_id in self._revoked:
                return None
        return Session(
            id=session_id,
            name=str(name),
            role=role,
            csrf=self._csrf(session_id),
            via=str(via),
            expires_at=float(expires),
        )

    def drop(self, session_id: str) -> None:
        """Revoke a session in this process (sign-out)."""
        now = self._clock()
        with self._lock:
            if len(self._revoked) >= MAX_SESSIONS:
                for sid in [k for k, e in self._revoked.items() if e <= now]:
                    del self._revoked[sid]
            self._revoked[session_id] = now + self._lifetime


def session_key(secrets_: list[str]) -> bytes:
    """The signing key for sessions, derived from the configured secrets (order-independent)."""
    digest = hashlib.sha256(b"geogate-console-session\0")
    for value in sorted(secrets_):
        digest.update(hashlib.sha256(value.encode()).digest())
    return digest.digest()


class SignInLimiter:
    """Failed sign-ins per key (client address, user name) in a sliding window."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self._window:
            q.popleft()
        return q

    def retry_after(self, *keys: str) -> int:
        """Seconds until any of ``keys`` may try again (0: now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                q = self._recent(key, now)
                if len(q) >= self._max:
                    wait = max(wait, q[0] + self._window - now)
                if not q:
                    self._failures.pop(key, None)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, *keys: str) -> None:
        """Count a failed attempt against each key."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= MAX_SESSIONS:  # made-up names must not grow it forever
                for stale in [k for k in self._failures if not self._recent(k, now)]:
                    del self._failures[stale]
            for key in keys:
                self._recent(key, now).append(now)
