"""`decide_many` (vectorized, for logs) and `decide` (hot path) must agree on every address."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geogate.decide import INVALID, Decider
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, parse_policy, resolve_policy_path

EXEMPT = parse_policy(
    """
[policy]
id = "exempt"
effective = 2024-07-09
[exemptions]
networks = ["59.224.0.0/16"]
[[rules]]
id = "cn"
regions = ["CN", "UA-43"]
"""
)
DECIDERS = {
    name: Decider(load_policy_set([resolve_policy_path(f"builtin:{name}")]), Snapshot.embedded())
    for name in ("unsupported-regions", "supported-countries")
} | {"exempt": Decider(EXEMPT, Snapshot.embedded())}
DATES = [datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 7, 10, tzinfo=UTC)]


@settings(max_examples=60)
@given(
    v4=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=64),
    v6=st.lists(st.integers(0, 2**128 - 1), max_size=16),
    name=st.sampled_from(sorted(DECIDERS)),
    at=st.sampled_from(DATES),
)
def test_batch_equals_single(v4: list[int], v6: list[int], name: str, at: datetime) -> None:
    decider = DECIDERS[name]
    v4 = [*v4, int(ipaddress.IPv4Address("59.224.1.2"))]  # in the exempt network, and in CN
    ips = [str(ipaddress.IPv4Address(x)) for x in v4] + [str(ipaddress.IPv6Address(x)) for x in v6]
    batch = decider.decide_many(ips, at=at)
    as_ints = decider.decide_many(np.array(v4, dtype=np.uint32), at=at)
    for i, ip in enumerate(ips):
        d = decider.decide(ip, at=at)
        assert int(batch.actions[i]) == int(d.action), (ip, d.explain())
        assert set(batch.reasons_of(i)) == set(d.reasons), ip
        if i < len(v4):
            assert int(as_ints.actions[i]) == int(d.action), ip


@pytest.mark.parametrize("bad", ["", "1.2.3.999", "nonsense", "1.2.3.4/24"])
def test_batch_marks_malformed_addresses_invalid(bad: str) -> None:
    batch = DECIDERS["unsupported-regions"].decide_many(["8.8.8.8", bad], at=DATES[1])
    assert int(batch.actions[1]) == INVALID
    assert batch.counts()["invalid"] == 1
    assert int(batch.actions[0]) != INVALID
