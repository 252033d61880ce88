"""The first decision for a range (the cold path) and the single-address range search.

The cold path builds one small object per new range on a verdict shared by every range of
the same (country, place, alternative country, flags); these tests hold it to the pure rule
for thousands of new ranges of both families, before and after the decider switches from
reading the columns to its packed combination column, and hold ``Snapshot.locate`` (bucket
table, /64 refinement, exact tunnelled-IPv6 prefixes) to the vectorised search. The decider
tests run on both cold paths, the compiled one (geogate._fastpath) and the pure-Python one.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geogate.decide import Decider, RequestContext, decide
from geogate.intel.snapshot import Snapshot
from geogate.policy.model import PolicySet
from geogate.policy.parse import load_policy_set, resolve_policy_path

AT = datetime(2024, 7, 10, tzinfo=UTC)


@cache
def _snap() -> Snapshot:
    return Snapshot.embedded()


@cache
def _policies() -> PolicySet:
    return load_policy_set([resolve_policy_path("builtin:unsupported-regions")])


def _v6_text(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def _one_per_range(snap: Snapshot, n: int, *, seed: int) -> list[str]:
    """``n`` addresses of distinct located ranges, half IPv4, half IPv6 (a random address
    inside each range)."""
    rng = np.random.default_rng(seed)
    located = np.flatnonzero(snap.country_idx != 0)
    v4 = located[located < snap.n4]
    v6 = located[located >= snap.n4]
    out = []
    for key in (*rng.choice(v4, n // 2, replace=False), *rng.choice(v6, n // 2, replace=False)):
        first, last = snap.network_of(int(key))
        family = socket.AF_INET6 if ":" in first else socket.AF_INET
        lo = int.from_bytes(socket.inet_pton(family, first), "big")
        hi = int.from_bytes(socket.inet_pton(family, last), "big")
        x = lo + int(rng.integers(0, 2**62)) % (hi - lo + 1)
        size = 16 if family == socket.AF_INET6 else 4
        out.append(socket.inet_ntop(family, x.to_bytes(size, "big")))
    return out


@pytest.mark.parametrize("accelerated", [True, False], ids=["compiled", "pure"])
def test_first_decisions_for_new_ranges_equal_the_pure_rule(accelerated: bool) -> None:
    """1,000 new ranges: the first 256 are decided from the columns, the rest from the packed
    combination column; every one equals the reference decision, evidence included, and the
    evidence is not computed until it is asked for."""
    snap, policies = _snap(), _policies()
    decider = Decider(policies, snap, accelerated=accelerated)
    addresses = _one_per_range(snap, 1000, seed=11)
    decisions = [decider.decide(ip, at=AT) for ip in addresses]
    assert decider.cache_stats().misses == len(set(map(snap.locate, addresses)))
    for ip, decision in zip(addresses, decisions, strict=True):
        reference = decide(policies, snap, RequestContext(ip=ip), at=AT)
        assert (decision.action, decision.reasons, decision.region) == (
            reference.action,
            reference.reasons,
            reference.region,
        )
        assert (decision.rule_id, decision.policy, decision.effective_at, decision.path) == (
            reference.rule_id,
            reference.policy,
            reference.effective_at,
            reference.path,
        )
        assert decision == reference
        assert decision.facts == snap.lookup(ip)


@pytest.mark.parametrize("accelerated", [True, False], ids=["compiled", "pure"])
def test_ranges_of_one_combination_share_their_verdict(accelerated: bool) -> None:
    """Two ranges with the same location answer: distinct decisions (each has its own
    evidence) reading one shared outcome (the same reasons object)."""
    snap, policies = _snap(), _policies()
    columns = np.stack(
        [snap.country_idx, snap.subdivision_idx, snap.alt_country_idx, snap.flags.astype(np.uint16)]
    )[:, : snap.n4]
    cn = snap.country_codes.index("CN")
    keys = np.flatnonzero((columns[0] == cn) & (columns[1:] == 0).all(axis=0))[:2]
    first, second = (snap.network_of(int(k))[0] for k in keys)
    decider = Decider(policies, snap, accelerated=accelerated)
    a, b = decider.decide(first, at=AT), decider.decide(second, at=AT)
    assert a is not b
    assert a.is_denied
    assert b.is_denied
    assert a.reasons is b.reasons
    assert a.facts.network != b.facts.network
    assert decider.cache_stats().misses == 2


@pytest.mark.parametrize("accelerated", [True, False], ids=["compiled", "pure"])
def test_tunnelled_ipv6_is_unwrapped_and_the_rest_of_2001_is_not(accelerated: bool) -> None:
    """Teredo (2001:0::/32) and 6to4 decide as their IPv4 client with the embedding as
    evidence; an address elsewhere in 2001::/16 is located in the IPv6 table."""
    snap, policies = _snap(), _policies()
    decider = Decider(policies, snap, accelerated=accelerated)
    client = "59.224.0.1"  # a Chinese address
    v4 = int.from_bytes(socket.inet_aton(client), "big")
    teredo = _v6_text(0x2001_0000 << 96 | 0xFFFF_FFFF ^ v4)
    six_to_four = _v6_text(0x2002 << 112 | v4 << 80 | 1)
    for ip, form in ((teredo, "teredo"), (six_to_four, "6to4")):
        decision = decider.decide(ip, at=AT)
        assert decision.is_denied
        assert decision.facts.embedding == form
        assert decision.facts.embedded_ipv4 == client
    plain = "2001:4860:4860::8888"
    assert snap.locate(plain) >= snap.n4
    assert decider.decide(plain, at=AT).facts.embedding is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_locate_v4_agrees_with_the_vectorised_search(x: int) -> None:
    snap = _snap()
    expected = int(snap.locate_many_v4(np.array([x], dtype=np.uint32))[0])
    assert snap.locate(socket.inet_ntoa(x.to_bytes(4, "big"))) == expected


@given(
    st.one_of(
        st.integers(min_value=0, max_value=2**128 - 1),
        st.integers(min_value=0x2000 << 112, max_value=(0x2C10 << 112) - 1),
        st.tuples(st.integers(min_value=0, max_value=10**9), st.integers(-2, 2)),
    )
)
def test_locate_v6_agrees_with_the_vectorised_search(value: int | tuple[int, int]) -> None:
    """Random addresses, addresses in the allocated space, and addresses at range starts
    (±2: the /64 refinement's edges) locate as the vectorised search locates them."""
    snap = _snap()
    his, los = snap.v6_starts
    if isinstance(value, tuple):
        i = value[0] % len(his)
        value = max(0, min(2**128 - 1, (int(his[i]) << 64 | int(los[i])) + value[1]))
    hi = np.array([value >> 64], dtype=np.uint64)
    lo = np.array([value & (2**64 - 1)], dtype=np.uint64)
    expected = int(snap.locate_many_v6(hi, lo)[0])
    assert snap.locate(_v6_text(value)) == expected


def test_locate_v6_agrees_with_the_vectorised_search_at_every_kind_of_place() -> None:
    """5,000 range starts and their neighbours (the /64 refinement) and 5,000 random
    addresses inside the dense /16 buckets (up to 100,000 starts each)."""
    snap = _snap()
    his, los = snap.v6_starts
    rng = np.random.default_rng(5)
    picks = rng.integers(1, len(his), 5000)
    starts = [int(his[i]) << 64 | int(los[i]) for i in picks]
    values = [max(0, s + int(d)) for s in starts for d in (-1, 0, 1)]
    dense = [0x2001, 0x2400, 0x2A01, 0x2A02, 0x2A09, 0x2605]
    values += [
        int(rng.choice(dense)) << 112 | int(rng.integers(0, 2**62)) << 50 for _ in range(5000)
    ]
    hi = np.array([v >> 64 for v in values], dtype=np.uint64)
    lo = np.array([v & (2**64 - 1) for v in values], dtype=np.uint64)
    expected = snap.locate_many_v6(hi, lo).tolist()
    assert [snap.locate(_v6_text(v)) for v in values] == expected


@pytest.mark.parametrize("accelerated", [True, False], ids=["compiled", "pure"])
def test_prepare_makes_every_verdict_so_no_first_decision_judges(accelerated: bool) -> None:
    """After ``prepare`` (the service calls it before serving) first decisions for new ranges
    only read verdicts: none is added, and they still equal the pure rule."""
    snap, policies = _snap(), _policies()
    decider = Decider(policies, snap, accelerated=accelerated)
    decider.prepare()
    verdicts = decider._view.verdicts  # the segment in force now (no `at` below)
    made = len(verdicts)
    assert made == len(np.unique(np.frombuffer(decider._combos or b"", dtype=np.uint64)))
    addresses = _one_per_range(snap, 400, seed=12)
    now = decider.clock.now()
    for ip in addresses:
        assert decider.decide(ip) == decide(policies, snap, RequestContext(ip=ip), at=now)
    assert len(verdicts) == made
    decider.prepare()  # idempotent
    assert len(verdicts) == made
