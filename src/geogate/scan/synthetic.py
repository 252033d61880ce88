"""Synthetic access logs for tests, benchmarks and trying ``geogate scan`` out.

Addresses are drawn from the snapshot itself (public ranges of a few supported and
unsupported regions, plus datacenter and VPN networks), so a scan of the log exercises every
path of the decision: allow, warn/deny by region, anonymizers and unknown space.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import pyarrow as pa

from geogate.intel.facts import NetworkFlag
from geogate.intel.samples import sample_addresses

REGIONS: Final = ("US", "DE", "GB", "SG", "JP", "CN", "HK", "RU", "IR", "UA-43")


def _pool(snapshot: Any, rng: np.random.Generator, size: int) -> list[str]:
    """Distinct IPv4 client addresses: most in a handful of regions, some on flagged
    networks."""
    starts = snapshot.v4_starts
    n4 = snapshot.n4
    flags = snapshot.flags[:n4]
    country = snapshot.country_idx[:n4]
    pools: list[np.ndarray] = []
    for code in REGIONS:
        if "-" in code:
            if code not in snapshot.subdivision_codes:
                continue
            keys = np.nonzero(
                snapshot.subdivision_idx[:n4] == snapshot.subdivision_codes.index(code)
            )[0]
        elif code in snapshot.country_codes:
            keys = np.nonzero(country == snapshot.country_codes.index(code))[0]
        else:
            continue
        if len(keys):
            pools.append(keys)
    flagged = np.nonzero(
        (flags & (int(NetworkFlag.HOSTING) | int(NetworkFlag.VPN) | int(NetworkFlag.TOR))) != 0
    )[0]
    if len(flagged):
        pools.append(flagged)
    weights = np.array([6, 2, 2, 1, 1, 3, 1, 1, 1, 1, 2][: len(pools)], float)
    which = rng.choice(len(pools), size=size, p=weights / weights.sum())
    out: list[str] = []
    for w in which.tolist():
        keys = pools[w]
        k = int(keys[rng.integers(0, len(keys))])
        lo = int(starts[k])
        hi = int(starts[k + 1]) if k + 1 < n4 else 2**32
        x = lo + int(rng.integers(0, max(1, hi - lo)))
        out.append(f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}")
    return out


def synthetic_requests(
    snapshot: Any,
    rows: int,
    *,
    start: datetime,
    days: int = 14,
    accounts: int = 2_000,
    clients: int = 20_000,
    seed: int = 7,
) -> pa.Table:
    """A table of ``rows`` requests: ``ts``, ``ip``, ``account``, ``org``, ``user_agent``,
    ``accept_language`` (the event format's names), in time order. Each account keeps to a
    few client addresses, as real API clients do."""
    rng = np.random.default_rng(seed)
    pool = _pool(snapshot, rng, clients)
    pool_arr = pa.array(pool, pa.string())
    acct = rng.zipf(1.3, rows) % accounts
    home = rng.integers(0, clients, accounts)
    roam = rng.random(rows) < 0.15
    client_idx = np.where(roam, rng.integers(0, clients, rows), home[acct])
    offsets = np.sort(rng.integers(0, days * 86_400, rows)) * 1_000_000  # whole seconds, as logs
    start_us = int(start.timestamp() * 1_000_000)
    ts = pa.array(start_us + offsets, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    acct_names = pa.array([f"acct-{i}" for i in range(accounts)])
    org_names = pa.array([f"org-{i % max(1, accounts // 5)}" for i in range(accounts)])
    agents = pa.array(["openai-python/1.30", "curl/8.5", "Mozilla/5.0", "okhttp/4.12"])
    langs = pa.array(["en-US,en;q=0.9", "zh-CN,zh;q=0.9", "ru-RU", "de-DE"])
    return pa.table(
        {
            "ts": ts,
            "ip": pool_arr.take(pa.array(client_idx)),
            "account": acct_names.take(pa.array(acct)),
            "org": org_names.take(pa.array(acct)),
            "user_agent": agents.take(pa.array(acct % 4)),
            "accept_language": langs.take(pa.array((acct // 4) % 4)),
        }
    )


def sample_clients(snapshot: Any) -> dict[str, str]:
    """One address per region of :data:`REGIONS` that the data has (for hand-written tests)."""
    return dict(zip(REGIONS, sample_addresses(snapshot, REGIONS, ipv6=False), strict=False))


def day_range(start: datetime, days: int) -> list[datetime]:
    """``days`` consecutive midnights from ``start``."""
    return [start + timedelta(days=i) for i in range(days)]
