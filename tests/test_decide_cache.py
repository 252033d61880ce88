"""The Decider's decision cache: graceful eviction (no clear-all cliff), hit counting, and the
lazily filled evidence of cached decisions being exactly that of the pure ``decide``."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import numpy as np
import pytest

from geogate.decide import (
    ADDRESS_ENTRY_BYTES,
    Decider,
    Decision,
    RequestContext,
    TwoGenerationCache,
    decide,
)
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, resolve_policy_path

AT = datetime(2024, 7, 10, tzinfo=UTC)


def _addresses(snap: Snapshot, n: int, *, seed: int) -> list[str]:
    """``n`` addresses from distinct IPv4 ranges of the snapshot (range starts)."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(snap.n4, size=n, replace=False)
    return [snap.network_of(int(k))[0] for k in keys]


def test_two_generation_cache_keeps_the_working_set() -> None:
    cache = TwoGenerationCache(100)
    for i in range(50):
        cache.put(("hot", i), i)
    for i in range(10_000):  # a stream of one-off keys, 100 times the capacity
        cache.put(("cold", i), i)
        hot = i % 50
        assert cache.get(("hot", hot)) == hot  # each hot key is used every 50 insertions
    assert len(cache) <= 200
    assert cache.evictions > 9_000


@pytest.mark.parametrize("accelerated", [True, False], ids=["compiled", "pure"])
def test_hot_addresses_stay_cached_under_a_stream_of_new_ones(accelerated: bool) -> None:
    """A decider whose cache holds a few hundred addresses: the ten hot clients keep hitting
    while thousands of one-off clients pass (the old cache was cleared whole when full)."""
    snap = Snapshot.embedded()
    policies = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    decider = Decider(
        policies, snap, cache_bytes=4 * 300 * ADDRESS_ENTRY_BYTES, accelerated=accelerated
    )
    hot = _addresses(snap, 10, seed=1)
    stream = _addresses(snap, 3_000, seed=2)
    for ip in hot:
        decider.decide(ip, at=AT)
    before = decider.cache_stats()
    for i, ip in enumerate(stream):
        decider.decide(ip, at=AT)
        decider.decide(hot[i % len(hot)], at=AT)
    stats = decider.cache_stats()
    hot_lookups = len(stream)
    assert stats.lookups - before.lookups == len(stream) + hot_lookups
    # every hot lookup hit; every stream address missed the address cache
    assert stats.hits - before.hits == hot_lookups
    assert stats.entries * ADDRESS_ENTRY_BYTES <= decider.cache_bytes
    assert 0.45 < stats.hit_rate < 0.55


@pytest.mark.parametrize("accelerated", [True, False], ids=["compiled", "pure"])
def test_cached_decisions_equal_the_pure_rule_with_their_evidence(accelerated: bool) -> None:
    snap = Snapshot.embedded()
    policies = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    decider = Decider(policies, snap, accelerated=accelerated)
    addresses = [*_addresses(snap, 300, seed=3), "2a00:1450:4001::1", "8.8.8.8"]
    for ip in addresses:
        cached = decider.decide(ip, at=AT)
        again = decider.decide(ip, at=AT)
        assert again is cached
        reference = decide(policies, snap, RequestContext(ip=ip), at=AT)
        assert cached == reference
        assert reference == cached
        assert hash(cached) == hash(reference)
        assert cached.facts == snap.lookup(ip)
        assert cached.to_dict() == reference.to_dict()
        restored = pickle.loads(pickle.dumps(cached))
        assert type(restored) is Decision
        assert restored == reference
        assert repr(cached) == repr(reference)


@pytest.mark.parametrize("accelerated", [True, False], ids=["compiled", "pure"])
def test_decisions_follow_the_policy_segment_of_their_instant(accelerated: bool) -> None:
    """One decider, instants before and after the enforcement date: each gets its own segment's
    answer, alternately, from the cache."""
    snap = Snapshot.embedded()
    policies = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
    decider = Decider(policies, snap, accelerated=accelerated)
    before, after = datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 7, 10, tzinfo=UTC)
    for ip in _addresses(snap, 200, seed=4):
        for when in (before, after, before, after):
            expected = decide(policies, snap, RequestContext(ip=ip), at=when)
            assert decider.decide(ip, at=when) == expected
