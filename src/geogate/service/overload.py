"""Load shedding: answer ``503`` + ``Retry-After`` at once instead of queueing without bound.

Two limits, both configurable (``[serve]`` ``max_concurrent_requests``,
``max_queue_delay_ms``, ``retry_after_seconds``; reference in ``docs/service.md``):

- **Concurrency**: at most ``max_concurrent_requests`` requests inside the app at once. This
  bounds the slow paths (account API calls waiting for the database, reloads) whose requests
  sit at an ``await``.
- **Queue delay**: the decision endpoints never wait for anything, so under overload requests do
  not pile up *inside* the app: they queue in front of it, in the event loop's ready queue (and
  then in the kernel's accept queue). A sampler task measures how late a 5 ms timer fires —
  the time a request now waits before it is even looked at; it rises at once and decays by a
  fifth per on-time sample. While that delay is above ``max_queue_delay_ms`` the share of new
  requests admitted shrinks (by 30 % per 5 ms sample, down to 1/32), and grows back by 5 points
  per sample once it is under; the others are refused at once, so the queue drains and the
  admitted requests keep a bounded latency. A refused request still costs the HTTP parsing
  (with uvicorn, over half the cost of a decision: see ``bench/RESULTS.md``), so shedding in
  the process bounds latency only up to a few times its capacity; a proxy in front should
  limit connections too.

Monitoring paths (``/healthz``, ``/readyz``, ``/metrics``) are never shed: an overloaded
service must still say so. Refusals are counted in ``geogate_shed_requests_total{reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from geogate.service.responses import encode_json, error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths that are answered even when the service sheds load.
NEVER_SHED: Final = frozenset({"/healthz", "/readyz", "/metrics"})
SAMPLE_SECONDS: Final = 0.005
DECAY: Final = 0.8
MIN_ADMIT: Final = 1 / 32
"""Share of requests still admitted at the worst: the service never goes fully dark."""


class LoadMonitor:
    """The load state shared by the guard and the app's lifespan: requests in flight and the
    latest measured queue delay. :meth:`start` runs the sampler (from the app's startup; without
    it, e.g. in-process tests without lifespan, the queue delay stays 0 and only the concurrency
    limit applies); :meth:`stop` ends it.

    ``max_concurrent`` 0 and ``max_queue_delay_ms`` 0 turn the respective limit off;
    ``on_shed(reason)`` is called for each refusal (``"concurrency"`` or ``"queue_delay"``).
    """

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queue_delay_ms: float,
        retry_after_seconds: int,
        on_shed: Callable[[str], None] | None = None,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue_delay = max_queue_delay_ms / 1000.0
        self.retry_after_seconds = retry_after_seconds
        self.on_shed = on_shed
        self.in_flight = 0
        self.queue_delay = 0.0
        """The latest measured queue delay (seconds)."""
        self.admit = 1.0
        """Share of new requests admitted (1.0 unless the queue delay is over the limit)."""
        self.credit = 0.0
        self._sampler: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(SAMPLE_SECONDS)
            late = max(0.0, loop.time() - start - SAMPLE_SECONDS)
            # Up at once, down gradually: one on-time sample between two slow loop iterations
            # must not reopen the gate (about 30 ms to fall from 80 ms to 20 ms).
            self.queue_delay = max(late, self.queue_delay * DECAY)
            # Admission control, multiplicative decrease and additive increase (as TCP): while
            # the delay is over the limit admit fewer requests, then open up step by step.
            if self.queue_delay > self.max_queue_delay:
                self.admit = max(MIN_ADMIT, self.admit * 0.7)
            elif self.admit < 1.0:
                self.admit = min(1.0, self.admit + 0.05)

    def admits(self) -> bool:
        """Whether to admit one more request at the current admission share (spread evenly:
        with a share of 1/4, every fourth request)."""
        if self.admit >= 1.0:
            return True
        self.credit += self.admit
        if self.credit >= 1.0:
            self.credit -= 1.0
            return True
        return False

    def start(self) -> None:
        """Start measuring the queue delay (no-op when that limit is off or already running)."""
        if self.max_queue_delay > 0 and (self._sampler is None or self._sampler.done()):
            self._sampler = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        """Stop the sampler task."""
        task, self._sampler = self._sampler, None
        self.queue_delay = 0.0
        self.admit = 1.0
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class OverloadGuard:
    """ASGI middleware refusing requests with 503 ``overloaded`` and ``Retry-After`` while
    ``monitor`` says the service is overloaded (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, monitor: LoadMonitor) -> None:
        self.app = app
        self.monitor = monitor
        retry = monitor.retry_after_seconds
        body = encode_json(
            error_body(
                code="overloaded",
                message=f"geogate is overloaded; retry after {retry} s",
                type_="service_unavailable",
            )
        )
        self._body = body
        self._headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(retry).encode()),
            (b"content-length", str(len(body)).encode()),
        ]

    async def _refuse(self, send: Send, reason: str) -> None:
        if self.monitor.on_shed is not None:
            self.monitor.on_shed(reason)
        await send({"type": "http.response.start", "status": 503, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        monitor = self.monitor
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if monitor.admit < 1.0 and not monitor.admits():
            await self._refuse(send, "queue_delay")
            return
        if monitor.max_concurrent and monitor.in_flight >= monitor.max_concurrent:
            await self._refuse(send, "concurrency")
            return
        monitor.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            monitor.in_flight -= 1
