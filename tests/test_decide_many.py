"""decide_many in chunks: the same answers whatever the chunk size, for integer arrays and for
text mixing IPv4, IPv6 and malformed entries across chunk boundaries, exemptions included."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from geogate.decide import INVALID, Decider, Reason
from geogate.intel.snapshot import Snapshot
from geogate.policy.parse import load_policy_set, parse_policy, resolve_policy_path

AT = datetime(2024, 7, 10, tzinfo=UTC)

EXEMPT = """
[policy]
id = "chunks"
version = "1"
mode = "deny-list"
effective = 2024-07-01T00:00:00Z

[exemptions]
networks = ["1.0.0.0/8", "2a00::/12"]
accounts = ["vip"]

[[rules]]
id = "cn"
regions = ["CN", "US"]
"""


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return Snapshot.embedded()


def addresses(n: int, *, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 18])
def test_integer_arrays_give_the_same_batch_in_any_chunk_size(snap: Snapshot, chunk: int) -> None:
    decider = Decider(load_policy_set([resolve_policy_path("builtin:unsupported-regions")]), snap)
    ips = addresses(5_000, seed=1)
    whole = decider.decide_many(ips, at=AT, chunk_size=1 << 20)
    parts = decider.decide_many(ips, at=AT, chunk_size=chunk)
    for name in ("actions", "reasons", "regions", "keys"):
        assert np.array_equal(getattr(whole, name), getattr(parts, name)), name


@pytest.mark.parametrize("chunk", [3, 64, 1 << 18])
def test_mixed_text_matches_single_decisions(snap: Snapshot, chunk: int) -> None:
    policy = parse_policy(EXEMPT, path="chunks.toml")
    decider = Decider(policy, snap)
    v4 = [str(int(a) >> 24) + "." + ".".join(str(int(a) >> s & 255) for s in (16, 8, 0))
          for a in addresses(300, seed=2)]  # fmt: skip
    texts: list[str] = []
    accounts: list[str | None] = []
    for i, ip in enumerate(v4):
        texts.append(ip)
        accounts.append("vip" if i % 17 == 0 else None)
        if i % 13 == 0:  # in the exempt IPv4 network
            texts.append(f"1.{i % 256}.0.1")
            accounts.append(None)
        if i % 5 == 0:
            texts.append(f"2a0{i % 10}:1450:4001::{i:x}")
            accounts.append(None)
        if i % 11 == 0:
            texts.append("not-an-ip" if i % 2 else "1.2.3")
            accounts.append(None)
    batch = decider.decide_many(texts, at=AT, accounts=accounts, chunk_size=chunk)
    assert len(batch) == len(texts)
    valid = [(ip, a) for ip, a in zip(texts, accounts, strict=True) if ip.count(".") != 2]
    valid = [(ip, a) for ip, a in valid if ip != "not-an-ip"]
    reasons = {r for ip, a in valid for r in decider.decide(ip, account=a, at=AT).reasons}
    # both kinds of exemption are exercised
    assert {Reason.EXEMPT_NETWORK, Reason.EXEMPT_ACCOUNT} <= reasons
    for i, (ip, account) in enumerate(zip(texts, accounts, strict=True)):
        if ip in ("not-an-ip", "1.2.3"):
            assert int(batch.actions[i]) == INVALID
            continue
        single = decider.decide(ip, account=account, at=AT)
        assert int(batch.actions[i]) == int(single.action), ip
        assert set(batch.reasons_of(i)) == set(single.reasons), ip
