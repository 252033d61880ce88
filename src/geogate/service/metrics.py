"""Prometheus metrics of the decision service (served at ``GET /metrics``).

Each app gets its own registry, so that several apps (tests, an app embedding the middleware)
never share counters. Metric names and labels are documented in ``docs/service.md``:

- ``geogate_decisions_total{endpoint,action,region,reason}``: decisions made; ``reason`` is the
  first (primary) reason code, ``region`` the decided region or ``unknown``;
- ``geogate_decision_seconds{endpoint}``: time to decide, from the request's headers being
  read to the answer being ready (network time excluded);
- ``geogate_request_errors_total{endpoint,code}``: requests refused before a decision
  (malformed JSON, body too large ...);
- ``geogate_snapshot_age_days``: age of the snapshot's oldest source (computed at scrape time);
- ``geogate_ready``, ``geogate_engine_generation``, ``geogate_reloads_total{result}``;
- with an account store: ``geogate_account_refreshes_total{result}`` (reloads of the blocked
  set, ``ok``/``error``), ``geogate_blocked_accounts`` (ids in the in-memory set) and
  ``geogate_blocked_accounts_age_seconds`` (since the last successful reload).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from geogate.decide import Decision
from geogate.service.responses import NO_REGION, primary_reason

# Decisions take microseconds; proxies time out in tens of milliseconds.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The service's metrics on a private registry. Thread-safe (prometheus-client locks)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "geogate_decisions_total",
            "Decisions made, by endpoint, action, region and primary reason.",
            ("endpoint", "action", "region", "reason"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "geogate_decision_seconds",
            "Time to decide one request (headers read to answer ready), by endpoint.",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "geogate_request_errors_total",
            "Requests refused before a decision, by endpoint and error code.",
            ("endpoint", "code"),
            registry=self.registry,
        )
        self.snapshot_age = Gauge(
            "geogate_snapshot_age_days",
            "Age in days of the oldest source in the loaded snapshot (NaN without one).",
            registry=self.registry,
        )
        self.ready = Gauge(
            "geogate_ready", "1 when a snapshot and a policy are loaded.", registry=self.registry
        )
        self.generation = Gauge(
            "geogate_engine_generation",
            "How many times policy and snapshot were loaded (1 at start).",
            registry=self.registry,
        )
        self.reloads = Counter(
            "geogate_reloads_total",
            "Reload attempts by result (ok, error).",
            ("result",),
            registry=self.registry,
        )
        self.account_refreshes = Counter(
            "geogate_account_refreshes_total",
            "Reloads of the blocked-account set from the account store, by result (ok, error).",
            ("result",),
            registry=self.registry,
        )
        # labels() takes a lock and builds a key each call; the hot path caches the children.
        self._children: dict[tuple[str, str, str, str], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def observe(self, endpoint: str, decision: Decision, seconds: float) -> None:
        """Count one decision and its latency."""
        key = (
            endpoint,
            decision.action.label,
            decision.region or NO_REGION,
            primary_reason(decision),
        )
        child = self._children.get(key)
        if child is None:
            child = self.decisions.labels(*key)
            self._children[key] = child
        child.inc()
        hist = self._latency_children.get(endpoint)
        if hist is None:
            hist = self.latency.labels(endpoint)
            self._latency_children[endpoint] = hist
        hist.observe(seconds)

    def error(self, endpoint: str, code: str) -> None:
        """Count a request refused before a decision."""
        self.errors.labels(endpoint, code).inc()

    def track(self, *, age_days: Callable[[], float], ready: Callable[[], float]) -> None:
        """Compute the snapshot age and readiness at scrape time."""
        self.snapshot_age.set_function(age_days)
        self.ready.set_function(ready)

    def account_refresh(self, result: str) -> None:
        """Count one reload of the blocked-account set (``ok`` or ``error``)."""
        self.account_refreshes.labels(result).inc()

    def track_accounts(
        self, *, blocked: Callable[[], float], age_seconds: Callable[[], float | None]
    ) -> None:
        """Report the blocked set's size and age at scrape time (age NaN before a load)."""
        Gauge(
            "geogate_blocked_accounts",
            "Blocked account ids held in memory by the decision path.",
            registry=self.registry,
        ).set_function(blocked)

        def age() -> float:
            value = age_seconds()
            return math.nan if value is None else value

        Gauge(
            "geogate_blocked_accounts_age_seconds",
            "Seconds since the blocked-account set was last reloaded from the store.",
            registry=self.registry,
        ).set_function(age)

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)
