"""IPv6 addresses that carry an IPv4 address decide like that IPv4 address, everywhere.

6to4 and Teredo ranges are filed under the relay operator's country in location data (the
issue that prompted this: ``2002:3be0:1::1``, 6to4 of a Chinese address, came back "allow
US"), and NAT64 / IPv4-compatible forms came back unknown. The snapshot unwraps them, so the
single lookup, the hot-path Decider, the pure ``decide``, the vectorized ``decide_many`` and
the client-address walk all see the embedded IPv4 address.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geogate.client_ip import TrustedProxies
from geogate.decide import Decider, RequestContext, decide
from geogate.intel.addresses import embedded_ipv4, embedded_ipv4_text
from geogate.intel.snapshot import Snapshot, embedded_ipv4_arrays
from geogate.policy.model import Action
from geogate.policy.parse import load_policy_set, resolve_policy_path

AT = datetime(2024, 7, 10, tzinfo=UTC)
SNAP = Snapshot.embedded()
POLICY = load_policy_set([resolve_policy_path("builtin:unsupported-regions")])
DECIDER = Decider(POLICY, SNAP, trusted=TrustedProxies.parse(["10.0.0.0/8"]))
_U64 = (1 << 64) - 1


def embeddings(v4: int) -> dict[str, int]:
    """Every IPv6 form of the IPv4 address ``v4`` (as integers), by form name."""
    return {
        "ipv4-mapped": 0xFFFF << 32 | v4,
        **({"ipv4-compatible": v4} if v4 > 1 else {}),  # :: and ::1 are not
        "ipv4-translated": 0xFFFF_0000 << 32 | v4,
        "6to4": 0x2002 << 112 | v4 << 80 | 0x1234 << 64 | 0x1,
        # Teredo: server 65.54.227.120, flags 0x8000, obfuscated port, obfuscated client.
        "teredo": 0x2001_0000 << 96
        | 0x4136_E378 << 64
        | 0x8000 << 48
        | 0x63BF << 32
        | (~v4 & 0xFFFFFFFF),
        "nat64": 0x0064_FF9B << 96 | v4,
        "nat64-local/96": 0x0064_FF9B_0001 << 80 | v4,  # 64:ff9b:1::a.b.c.d
        # The RFC 6052 forms below /96 are told apart by their zero suffix and an IPv4 address
        # not in 0.0.0.0/8 (never a client address), so they are exact for every other one.
        **(rfc6052_forms(v4) if v4 >> 24 else {}),
    }


def rfc6052_forms(v4: int) -> dict[str, int]:
    """The RFC 6052 /32 to /64 forms of ``v4`` in 64:ff9b::/32 (u octet, subnet bits zero):
    the IPv4 bits start at the prefix length and skip bits 64-71."""
    local = 0x0064_FF9B_0001 << 80
    other = 0x0064_FF9B << 96

    def at(prefix: int, length: int) -> int:
        before_u = max(0, 64 - length)
        after_u = 32 - before_u
        high = (v4 >> after_u) << 64 if before_u else 0
        return prefix | high | (v4 & ((1 << after_u) - 1)) << (56 - after_u)

    return {
        "nat64/32": at(other, 32),
        # the /40 form of 1.x.x.x lies in the local-use block 64:ff9b:1::/48
        **({"nat64/40": at(other, 40)} if v4 >> 24 != 1 else {}),
        "nat64-local": at(local, 48),
        "nat64-local/56": at(local, 56),
        "nat64-local/64": at(local, 64),
    }


def _text(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


def test_the_addresses_from_the_issue() -> None:
    cn = "59.224.0.1"
    assert DECIDER.decide(cn, at=AT).action is Action.DENY
    for ip in (
        "2002:3be0:1::1",
        "64:ff9b::3be0:1",
        "::3be0:1",
        _text(embeddings(0x3BE00001)["teredo"]),
    ):
        d = DECIDER.decide(ip, at=AT)
        assert d.action is Action.DENY, (ip, d.explain())
        assert d.facts.country == "CN"
        assert d.facts.embedded_ipv4 == cn


def test_evidence_names_the_unwrapped_form() -> None:
    d = decide(POLICY, SNAP, RequestContext(ip="2002:3be0:1::1"), at=AT)
    assert (d.facts.embedding, d.facts.embedded_ipv4) == ("6to4", "59.224.0.1")
    assert d.to_dict()["evidence"]["embedding"] == "6to4"
    plain = decide(POLICY, SNAP, RequestContext(ip="59.224.0.1"), at=AT)
    assert "embedding" not in plain.to_dict()["evidence"]
    mapped = SNAP.lookup("::ffff:59.224.0.1")
    assert mapped.embedding is None
    assert mapped.country == "CN"


def test_ordinary_ipv6_is_not_unwrapped() -> None:
    for ip in (
        "2001:db8::1",
        "2001:4860:4860::8888",
        "2a00:1450:4001::1",
        "::",
        "::1",
        "64:ff9c::1",
    ):
        assert embedded_ipv4_text(ip) is None, ip
    assert embedded_ipv4_text("1.2.3.4") is None


def test_nat64_local_forms() -> None:
    assert embedded_ipv4_text("64:ff9b:1::102:304") == ("1.2.3.4", "nat64-local")
    assert embedded_ipv4_text("64:ff9b:1:102:3:400::") == ("1.2.3.4", "nat64-local")
    # a /96 under a longer local prefix: the u octet is not zero, so the last 32 bits
    assert embedded_ipv4_text("64:ff9b:1:ab:ff00::102:304") == ("1.2.3.4", "nat64-local")
    # RFC 6052 /56 and /64 forms in the local block; /32 and /40 forms in 64:ff9b::/32
    assert embedded_ipv4_text("64:ff9b:1:1:2:304::") == ("1.2.3.4", "nat64-local")
    assert embedded_ipv4_text("64:ff9b:1:0:1:203:400:0") == ("1.2.3.4", "nat64-local")
    assert embedded_ipv4_text("64:ff9b:102:304::") == ("1.2.3.4", "nat64")
    assert embedded_ipv4_text("64:ff9b:5:607:8::") == ("5.6.7.8", "nat64")
    # a /96 under a subnet of the local block: the suffix is not zero, so the last 32 bits
    assert embedded_ipv4_text("64:ff9b:1:0:5:0:102:304") == ("1.2.3.4", "nat64-local")


def test_nat64_forms_of_a_denied_address_are_denied_at_every_entry() -> None:
    """The /56 and /64 local forms of a Chinese address once read as 1.0.0.0 (allow AU) and
    0.0.0.0; now the decision, the batch and the forwarded walk all see 59.224.0.1."""
    forms = [_text(x) for x in rfc6052_forms(0x3BE00001).values()]
    assert "64:ff9b:1:0:3b:e000:100:0" in forms
    for ip in forms:
        d = DECIDER.decide(ip, at=AT)
        assert (d.action, d.facts.country, d.facts.embedded_ipv4) == (
            Action.DENY,
            "CN",
            "59.224.0.1",
        ), ip
        _, walked = DECIDER.decide_request("10.0.0.7", x_forwarded_for=f"[{ip}]:443", at=AT)
        assert walked.action is Action.DENY, ip
    batch = DECIDER.decide_many([*forms, "8.8.8.8"], at=AT)
    assert batch.actions.tolist()[:-1] == [int(Action.DENY)] * len(forms)


def test_client_address_walk_locates_the_embedded_address() -> None:
    ip, d = DECIDER.decide_request("10.0.0.7", x_forwarded_for="2002:3be0:1::1", at=AT)
    assert ip == "2002:3be0:1::1"
    assert d.action is Action.DENY
    assert d.facts.country == "CN"


v4s = st.one_of(
    st.integers(0, (1 << 32) - 1),
    st.sampled_from([0x3BE00001, 0x08080808, 0x05080101, 0x01000000, 0xFFFFFFFF, 0]),
)


@settings(max_examples=300, deadline=None)
@given(v4=v4s)
def test_every_embedding_decides_like_the_ipv4_address(v4: int) -> None:
    ipv4 = str(ipaddress.IPv4Address(v4))
    want = DECIDER.decide(ipv4, at=AT)
    forms = embeddings(v4)
    texts = [_text(x) for x in forms.values()]
    for name, value in forms.items():
        text = _text(value)
        assert embedded_ipv4(value) == (v4, name.split("/")[0]), (name, text)
        assert SNAP.locate(text) == SNAP.locate(ipv4), text
        got = DECIDER.decide(text, at=AT)
        assert (got.action, got.reasons, got.region) == (want.action, want.reasons, want.region), (
            text
        )
        pure = decide(POLICY, SNAP, RequestContext(ip=text), at=AT)
        assert (pure.action, pure.reasons) == (want.action, want.reasons), text
    batch = DECIDER.decide_many([ipv4, *texts], at=AT)
    assert set(batch.actions.tolist()) == {int(want.action)}
    assert len({batch.reasons[i] for i in range(len(batch))}) == 1
    hi = np.array([x >> 64 for x in forms.values()], dtype=np.uint64)
    lo = np.array([x & _U64 for x in forms.values()], dtype=np.uint64)
    found, addrs = embedded_ipv4_arrays(hi, lo)
    assert found.all()
    assert set(addrs.tolist()) == {v4}


@settings(max_examples=300, deadline=None)
@given(value=st.integers(0, (1 << 128) - 1))
def test_vectorized_unwrap_matches_the_scalar_one(value: int) -> None:
    found, addrs = embedded_ipv4_arrays(
        np.array([value >> 64], dtype=np.uint64), np.array([value & _U64], dtype=np.uint64)
    )
    scalar = embedded_ipv4(value)
    assert bool(found[0]) == (scalar is not None)
    if scalar is not None:
        assert int(addrs[0]) == scalar[0]


@pytest.mark.parametrize(
    "prefix",
    [0x2002 << 112, 0x2001_0000 << 96, 0x0064_FF9B << 96, 0x0064_FF9B_0001 << 80, 0x0064 << 112],
)
def test_vectorized_unwrap_on_prefix_edges(prefix: int) -> None:
    for value in (prefix, prefix | 1, prefix | _U64, prefix | (1 << 96) - 1):
        test_vectorized_unwrap_matches_the_scalar_one.hypothesis.inner_test(value=value)  # type: ignore[attr-defined]


nat64_values = st.one_of(
    st.integers(0, (1 << 96) - 1).map(lambda low: 0x0064_FF9B << 96 | low),
    st.integers(0, (1 << 80) - 1).map(lambda low: 0x0064_FF9B_0001 << 80 | low),
    # RFC 6052 forms: any high half, a zero u octet and a suffix of zero bits below
    st.tuples(st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 56) - 1), st.integers(0, 56)).map(
        lambda t: 0x0064_FF9B << 96 | t[0] << 64 | (t[1] >> t[2] << t[2])
    ),
)


@settings(max_examples=300, deadline=None)
@given(value=nat64_values)
def test_vectorized_unwrap_matches_the_scalar_one_in_nat64(value: int) -> None:
    test_vectorized_unwrap_matches_the_scalar_one.hypothesis.inner_test(value=value)  # type: ignore[attr-defined]
