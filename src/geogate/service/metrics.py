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
- ``geogate_decision_cache_lookups_total``, ``geogate_decision_cache_hits_total``,
  ``geogate_decision_cache_range_hits_total`` (a new address in a range seen before) and
  ``geogate_decision_cache_entries`` / ``geogate_decision_cache_bytes`` (held now, estimated):
  the Decider's cache, copied from its counters at scrape time and every second;
- ``geogate_ready``, ``geogate_engine_generation``, ``geogate_reloads_total{result}``;
- with an account store: ``geogate_account_refreshes_total{result}`` (reloads of the blocked
  set, ``ok``/``error``), ``geogate_blocked_accounts`` (ids in the in-memory set) and
  ``geogate_blocked_accounts_age_seconds`` (since the last successful reload).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from geogate.decide import CacheStats, Decision
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


class FunctionGauge(Collector):
    """A gauge whose value a function computes at scrape time. Unlike prometheus-client's
    ``Gauge.set_function`` it keeps nothing in the multiprocess files: it is the answering
    process's own view (NaN until a function is set)."""

    def __init__(self, name: str, documentation: str, *, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self._function: Callable[[], float] = lambda: math.nan
        registry.register(self)

    def set_function(self, function: Callable[[], float]) -> None:
        """Compute the value with ``function`` from now on."""
        self._function = function

    def collect(self) -> Iterable[Metric]:
        """The one sample (prometheus-client's collector interface)."""
        yield GaugeMetricFamily(self.name, self.documentation, value=float(self._function()))

    def describe(self) -> Iterable[Metric]:
        """The metric without its value (so registration checks the name)."""
        yield GaugeMetricFamily(self.name, self.documentation)


def use_multiprocess(directory: str) -> None:
    """Switch prometheus-client to its multiprocess mode in this process: every counter,
    histogram and plain gauge made from now on is kept in a file under ``directory`` (one per
    process), and :meth:`ServiceMetrics.render` adds up the files of all worker processes.
    Call it in a process that only serves geogate (it is a process-wide setting), before the
    metrics are made."""
    from prometheus_client import values  # noqa: PLC0415

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class ServiceMetrics:
    """The service's metrics on a private registry. Thread-safe (prometheus-client locks).

    With ``multiprocess_dir`` (several worker processes, see :func:`use_multiprocess`) the
    counters and histograms of every worker are added up at scrape time, so any worker's
    ``/metrics`` shows the whole service; the gauges computed at scrape time (readiness,
    snapshot age, generation, blocked accounts) are the answering worker's, which all load
    the same data.
    """

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        # Gauges computed by a function at scrape time: never in the multiprocess files.
        self.live = CollectorRegistry(auto_describe=True)
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
        self.snapshot_age = FunctionGauge(
            "geogate_snapshot_age_days",
            "Age in days of the oldest source in the loaded snapshot (NaN without one).",
            registry=self.live,
        )
        self.ready = FunctionGauge(
            "geogate_ready", "1 when a snapshot and a policy are loaded.", registry=self.live
        )
        self.generation = FunctionGauge(
            "geogate_engine_generation",
            "How many times policy and snapshot were loaded (1 at start).",
            registry=self.live,
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
        self.cache_lookups = Counter(
            "geogate_decision_cache_lookups",
            "Decisions asked of the Decider (its decision cache's lookups).",
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "geogate_decision_cache_hits",
            "Decisions answered from the per-address decision cache.",
            registry=self.registry,
        )
        self.cache_range_hits = Counter(
            "geogate_decision_cache_range_hits",
            "Address-cache misses answered from the per-range cache (a range seen before).",
            registry=self.registry,
        )
        self.cache_entries = Gauge(
            "geogate_decision_cache_entries",
            "Entries held in the decision cache (all workers).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.cache_bytes = Gauge(
            "geogate_decision_cache_bytes",
            "Estimated bytes held by the decision cache (all workers).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._cache_source: Callable[[], tuple[object, CacheStats] | None] | None = None
        self._cache_seen: tuple[object, CacheStats] | None = None
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
        FunctionGauge(
            "geogate_blocked_accounts",
            "Blocked account ids held in memory by the decision path.",
            registry=self.live,
        ).set_function(blocked)

        def age() -> float:
            value = age_seconds()
            return math.nan if value is None else value

        FunctionGauge(
            "geogate_blocked_accounts_age_seconds",
            "Seconds since the blocked-account set was last reloaded from the store.",
            registry=self.live,
        ).set_function(age)

    def track_cache(self, source: Callable[[], tuple[object, CacheStats] | None]) -> None:
        """Follow a decision cache: ``source`` gives (the Decider, its stats), or None when
        there is none (no snapshot). A new Decider (after a reload) starts from zero."""
        self._cache_source = source

    def sync_cache(self) -> None:
        """Copy the decision cache's counters into the metrics (the increase since the last
        call). Cheap; called at scrape time and every second by the service."""
        if self._cache_source is None:
            return
        current = self._cache_source()
        if current is None:
            return
        owner, stats = current
        seen = self._cache_seen
        if seen is None or seen[0] is not owner:
            base = CacheStats(
                lookups=0, hits=0, range_hits=0, misses=0, entries=0, bytes_estimate=0
            )
        else:
            base = seen[1]
        self.cache_lookups.inc(max(0, stats.lookups - base.lookups))
        self.cache_hits.inc(max(0, stats.hits - base.hits))
        self.cache_range_hits.inc(max(0, stats.range_hits - base.range_hits))
        self.cache_entries.set(stats.entries)
        self.cache_bytes.set(stats.bytes_estimate)
        self._cache_seen = (owner, stats)

    def render(self) -> bytes:
        """The exposition text of every metric (of all workers in multiprocess mode)."""
        self.sync_cache()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry) + generate_latest(self.live)
        from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged) + generate_latest(self.live)
